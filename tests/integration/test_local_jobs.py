"""Whole jobs in one process (no gRPC) on tiny random weights and a local store: outputs, caching,
cancellation, resumption after a coordinator dies, and bad input."""

from __future__ import annotations

import json
import threading
import time

import pytest

from inspatio_world.jobs import manifest as manifests
from inspatio_world.jobs.local_stages import LocalStages
from inspatio_world.jobs.manager import JobManager, lease_key
from inspatio_world.jobs.manifest import CANCELLED, FAILED, RUNNING, SUCCEEDED, Manifest
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.runner import BlockPublished, JobFinished, StageFinished
from inspatio_world.media.decode import VideoError, read_frames
from inspatio_world.stages.generate import GenerateOutput
from inspatio_world.store.local import LocalStore

from tests.support.local_jobs import StagesWithHook, manager, run_job, video_file, weights  # noqa: F401 (fixtures)


def _run(manager: JobManager, video_file, **options) -> tuple[Manifest, list]:
    return run_job(manager, video_file, JobOptions(adaptive_frames=False, **{"trajectory_name": "x_y_circle_cycle.txt", **options}))


def test_job_writes_every_output_and_reports_progress(manager, video_file):
    job, events = _run(manager, video_file)
    assert job.state == SUCCEEDED, job.error
    finished = [e.timing.stage for e in events if isinstance(e, StageFinished)]
    assert sorted(finished) == ["caption", "depth", "generate", "render"]
    blocks = [e for e in events if isinstance(e, BlockPublished)]
    assert [b.index for b in blocks] == [0] and blocks[0].frames == 9
    assert events.index(blocks[0]) < events.index(events[-1])  # blocks arrive before the end
    for name in ("pred", "source", "render", "compare"):
        frames = read_frames(manager.store.download(job.outputs[name], manager.store.root / f"{name}.mp4"))
        assert frames.shape[0] == 9, name
        assert frames.shape[2:] == ((64, 112 * 3) if name == "compare" else (64, 112))
    stored = json.loads(manager.store.get_bytes(job.outputs["manifest"]))
    assert stored["state"] == SUCCEEDED and stored["caption"] == job.caption
    # which weights made each output: the identities the stages key their outputs with
    identities = manager.runner.stages.identities
    assert stored["weights"] == {"caption": identities["caption"].digest, "depth": identities["depth"].digest,
                                 "generator": identities["generator"].digest}  # fmt: skip


def test_second_trajectory_reuses_caption_and_depth(manager, video_file):
    first, _ = _run(manager, video_file)
    second, _ = _run(manager, video_file, trajectory_name="", trajectory_text="0 5\n0 -5\n0 0\n")
    assert first.stages["caption"].cache_hit is False and first.stages["depth"].cache_hit is False
    assert second.stages["caption"].cache_hit and second.stages["depth"].cache_hit
    assert not second.stages["render"].cache_hit and not second.stages["generate"].cache_hit
    forced, _ = _run(manager, video_file, force=True)
    assert not forced.stages["depth"].cache_hit and not forced.stages["generate"].cache_hit


def test_prompt_replaces_the_caption(manager, video_file):
    job, events = _run(manager, video_file, prompt="a red box on a street")
    assert job.caption == "a red box on a street"
    assert "caption" not in [e.timing.stage for e in events if isinstance(e, StageFinished)]


def test_cancelled_job_stops(manager, video_file):
    video = manager.upload_video([video_file.read_bytes()], "clip.mp4")
    job = manager.submit(JobOptions(trajectory_name="zoom_out_in.txt"), video)
    manager.cancel(job.job_id)
    final = [e for e in manager.watch(job.job_id) if isinstance(e, JobFinished)][0].manifest
    assert final.state == CANCELLED
    assert "pred" not in final.outputs


def test_unfinished_job_of_a_dead_coordinator_is_resumed(tmp_path, weights, video_file):
    store = LocalStore(tmp_path / "store")
    first = JobManager(store, LocalStages(store, weights), lease_seconds=1.0)
    video = first.upload_video([video_file.read_bytes()], "clip.mp4")
    first.shutdown()
    # What a coordinator that died mid-job leaves behind: a running manifest and an expired lease.
    options = JobOptions(trajectory_name="x_y_circle_cycle.txt", adaptive_frames=False)
    orphan = manifests.save(store, Manifest.new(options, video).with_(state=RUNNING))
    store.put_bytes(lease_key(orphan.job_id), json.dumps({"owner": "dead", "expires": time.time() - 1}).encode())
    second = JobManager(store, LocalStages(store, weights), lease_seconds=1.0)
    try:
        assert second.resume_unfinished() == [orphan.job_id]
        final = [e for e in second.watch(orphan.job_id) if isinstance(e, JobFinished)][0].manifest
        assert final.state == SUCCEEDED, final.error
        assert not store.exists(lease_key(orphan.job_id))
    finally:
        second.shutdown()


def test_live_lease_is_not_taken_over(tmp_path, weights, video_file):
    store = LocalStore(tmp_path / "store")
    manager = JobManager(store, LocalStages(store, weights), lease_seconds=30.0)
    try:
        video = manager.upload_video([video_file.read_bytes()], "clip.mp4")
        job = manifests.save(store, Manifest.new(JobOptions(trajectory_name="x_y_circle_cycle.txt"), video).with_(state=RUNNING))
        store.put_bytes(lease_key(job.job_id), json.dumps({"owner": "alive", "expires": time.time() + 60}).encode())
        assert manager.resume_unfinished() == []
    finally:
        manager.shutdown()


def test_bad_input_is_refused_and_leaves_nothing(manager, tmp_path):
    before = sorted(i.key for i in manager.store.list(""))
    with pytest.raises(VideoError):
        manager.upload_video([b"definitely not a video"], "x.mp4")
    with pytest.raises(ValueError, match="empty"):
        manager.upload_video([], "x.mp4")
    assert sorted(i.key for i in manager.store.list("")) == before
    with pytest.raises(ValueError, match="exactly one trajectory"):
        JobOptions().validate()
    with pytest.raises(ValueError, match="unknown shipped trajectory"):
        JobOptions(trajectory_name="../../etc/passwd").validate()
    with pytest.raises(ValueError, match=":2: 'nan' is not a finite number"):
        JobOptions(trajectory_text="0 1\n0 nan\n1 1\n").validate()
    with pytest.raises(ValueError, match="autoencoder"):
        JobOptions(trajectory_name="zoom_out_in.txt", autoencoder="vqgan").validate()


def test_watch_from_another_thread_sees_the_end(manager, video_file):
    video = manager.upload_video([video_file.read_bytes()], "clip.mp4")
    job = manager.submit(JobOptions(trajectory_name="x_y_circle_cycle.txt", adaptive_frames=False), video)
    seen: list = []
    watcher = threading.Thread(target=lambda: seen.extend(manager.watch(job.job_id)))
    watcher.start()
    watcher.join(timeout=120)
    assert isinstance(seen[-1], JobFinished) and seen[-1].manifest.state == SUCCEEDED


# --- a failed or cancelled job keeps its progress in its final manifest ---------------------------

def _run_with_hook(tmp_path, weights, video_file, hook) -> Manifest:
    """Run one job whose generate calls `hook(manager, job_id, event)`; the final manifest as stored."""
    store = LocalStore(tmp_path / "store")
    job_ids: list[str] = []
    stages = StagesWithHook(LocalStages(store, weights), lambda event: hook(manager, job_ids[0], event))
    manager = JobManager(store, stages, lease_seconds=2.0)
    try:
        video = manager.upload_video([video_file.read_bytes()], "clip.mp4")
        job = manager.submit(JobOptions(trajectory_name="x_y_circle_cycle.txt", adaptive_frames=False), video)
        job_ids.append(job.job_id)  # long before the generate stage starts (caption, depth and render run first)
        final = [e for e in manager.watch(job.job_id) if isinstance(e, JobFinished)][0].manifest
        assert manifests.load(store, job.job_id) == final  # what the watcher saw is what was saved
        return final
    finally:
        manager.shutdown()


def _cancel_at_first_block(manager: JobManager, job_id: str, event) -> None:
    if isinstance(event, BlockPublished) and event.index == 0:
        manager.cancel(job_id)  # before the runner sees the block: it stops right after recording it


def _fail_after_the_blocks(manager: JobManager, job_id: str, event) -> None:
    if isinstance(event, GenerateOutput):
        raise RuntimeError("the decoder broke")


def test_cancelled_job_keeps_its_progress(tmp_path, weights, video_file):
    final = _run_with_hook(tmp_path, weights, video_file, _cancel_at_first_block)
    assert final.state == CANCELLED and final.error is None
    assert final.caption
    assert {"caption", "depth", "render"} <= set(final.stages) and "generate" not in final.stages
    assert final.stages["render"].keys["render"] and final.stages["depth"].keys["depth"]
    assert set(final.weights) == {"caption", "depth"}
    assert final.blocks_done >= 1 and final.blocks_total >= final.blocks_done
    assert "pred" not in final.outputs and final.outputs["manifest"] == final.key


def test_failed_job_keeps_its_progress_and_says_why(tmp_path, weights, video_file):
    final = _run_with_hook(tmp_path, weights, video_file, _fail_after_the_blocks)
    assert final.state == FAILED
    assert final.error == "RuntimeError: the decoder broke"
    assert final.caption
    assert {"caption", "depth", "render"} <= set(final.stages) and "generate" not in final.stages
    assert set(final.weights) == {"caption", "depth"}
    assert final.blocks_done == final.blocks_total == 1  # the one block was published before the failure
    assert final.outputs == {"manifest": final.key}
