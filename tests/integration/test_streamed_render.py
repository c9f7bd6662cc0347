"""A full job renders inside the generate call, block by block (stages/render_feed.py): the first
block comes before the whole render exists, and every output is the render-then-generate job's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from inspatio_world.jobs.local_stages import LocalStages
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import CANCELLED, SUCCEEDED
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.runner import BlockPublished, StageFinished
from inspatio_world.media.decode import read_images
from inspatio_world.store.local import LocalStore

from tests.support.clips import H264_RUN_TO_RUN_LEVELS, write_sample_mp4
from tests.support.local_jobs import HEIGHT, WIDTH, StagesWithHook, run_job, weights  # noqa: F401 (fixtures)

# 12 latents = 4 blocks; block 0 is encoded from render frames 0-8 (16 rendered, in chunks of 8). The
# generator runs at most two blocks ahead of the block being published (stages/generate.py), so when
# block 0 is handed over at most the frames of blocks 1 and 2 are rendered (up to 40 of 45, in chunks of 8).
FRAMES = 45
OPTIONS = JobOptions(trajectory_name="x_y_circle_cycle.txt", adaptive_frames=False, seed=7)
VIDEOS = ("pred", "source", "render", "compare")


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    return write_sample_mp4(tmp_path_factory.mktemp("clip"), FRAMES, HEIGHT, WIDTH)


def _job(store: LocalStore, weights, video_file, stream: bool, hook=None, **options):
    """Run one job on its own manager; `hook(manager, event)` sees each generate event first."""
    stages = LocalStages(store, weights, stream_render=stream)
    if hook is not None:
        stages = StagesWithHook(stages, lambda event: hook(manager, event))
    manager = JobManager(store, stages, lease_seconds=2.0)
    try:
        return run_job(manager, video_file, replace(OPTIONS, **options))
    finally:
        manager.shutdown()


def _first(events, kind, test=lambda e: True) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, kind) and test(e))


def test_streamed_job_equals_the_whole_video_job(tmp_path, weights, video_file):
    whole_store, streamed_store = LocalStore(tmp_path / "whole"), LocalStore(tmp_path / "streamed")
    whole, whole_events = _job(whole_store, weights, video_file, stream=False)
    streamed, streamed_events = _job(streamed_store, weights, video_file, stream=True)
    assert whole.state == streamed.state == SUCCEEDED, (whole.error, streamed.error)
    assert whole.blocks_total == streamed.blocks_total == 4

    # The latency win: the streamed job's first block comes before its render is finished.
    render_done = lambda e: e.timing.stage == "render"  # noqa: E731
    assert _first(whole_events, StageFinished, render_done) < _first(whole_events, BlockPublished)
    assert _first(streamed_events, BlockPublished) < _first(streamed_events, StageFinished, render_done)

    # The same render under the same content keys, and from it the same generated frames. Lossless
    # outputs are compared frame for frame; the .mkv bytes hold random UIDs, so no two runs match.
    assert streamed.stages["render"].keys == whole.stages["render"].keys and not streamed.stages["render"].cache_hit
    render_keys = streamed.stages["render"].keys
    assert streamed_store.get_bytes(render_keys["schedule"]) == whole_store.get_bytes(render_keys["schedule"])
    assert streamed.caption == whole.caption
    for name in ("render", "mask"):
        a, b = _frames(whole_store, render_keys[name], tmp_path), _frames(streamed_store, render_keys[name], tmp_path)
        assert a.shape[0] == FRAMES and (a == b).all(), name
    # The H.264 mp4s are not reproducible even between two whole-video jobs (a few percent of the
    # decoded values move by a level or two between runs), so they are held to a tolerance.
    for name in VIDEOS:
        a, b = _frames(whole_store, whole.outputs[name], tmp_path), _frames(streamed_store, streamed.outputs[name], tmp_path)
        assert a.shape == b.shape and a.shape[0] == FRAMES, name
        assert (a.float() - b.float()).abs().mean() < H264_RUN_TO_RUN_LEVELS, name
    # Blocks stream under another prefix (the render is not published yet), with the same frames:
    # the lossless per-block pred is bit for bit the whole-video job's.
    whole_blocks = [e for e in whole_events if isinstance(e, BlockPublished)]
    streamed_blocks = [e for e in streamed_events if isinstance(e, BlockPublished)]
    assert [b.key for b in whole_blocks] != [b.key for b in streamed_blocks]
    for a, b in zip(whole_blocks, streamed_blocks, strict=True):
        frames = _frames(whole_store, a.key, tmp_path), _frames(streamed_store, b.key, tmp_path)
        assert frames[0].shape[0] == a.frames and (frames[0] == frames[1]).all()


def _frames(store: LocalStore, key: str, folder):
    return read_images(store.download(key, folder / ("frames" + key[key.rindex("."):])))


def _cancel_at_first_block(manager: JobManager, event) -> None:
    if isinstance(event, BlockPublished) and event.index == 0:
        (job,) = manager.list()
        manager.cancel(job.job_id)


def test_a_partial_render_is_never_published_and_a_cached_render_is_used(tmp_path, weights, video_file):
    store = LocalStore(tmp_path / "store")
    cancelled, _ = _job(store, weights, video_file, stream=True, hook=_cancel_at_first_block)
    assert cancelled.state == CANCELLED and cancelled.blocks_done == 1
    assert "render" not in cancelled.stages  # at most 40 of 45 frames were rendered: nothing to record
    assert not list(store.list("cache/render/")), "a partial render sits in the render cache"

    rendered, _ = _job(store, weights, video_file, stream=True, render_only=True)
    assert rendered.state == SUCCEEDED and not rendered.stages["render"].cache_hit
    full, events = _job(store, weights, video_file, stream=True)
    assert full.state == SUCCEEDED, full.error
    assert full.stages["render"].cache_hit and full.stages["render"].keys == rendered.stages["render"].keys
    assert full.blocks_done == full.blocks_total == 4 and store.exists(full.outputs["pred"])
