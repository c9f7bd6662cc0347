"""`inspatio generate`'s job: tiny weights, sample clip, streamed mp4 outputs that decode."""

from __future__ import annotations

from inspatio_world.media.video_io import read_frames
from inspatio_world.pipeline.local_job import RANDOM_WEIGHTS_BANNER, SampleJob, run_sample_job


def test_sample_job_writes_decodable_videos(tmp_path):
    lines: list[str] = []
    job = SampleJob(out_dir=tmp_path / "out", tiny_weights_dir=tmp_path / "w", frames=21, height=32, width=48)
    outputs = run_sample_job(job, emit=lines.append)
    assert lines[0] == RANDOM_WEIGHTS_BANNER
    assert any(line.startswith("block 2/2: frames 9-20 written") for line in lines)
    pred = read_frames(outputs["pred"])
    assert pred.shape == (21, 3, 32, 48)
    assert read_frames(outputs["source"]).shape == (21, 3, 32, 48)
    assert read_frames(outputs["mask"]).shape == (21, 3, 32, 48)
