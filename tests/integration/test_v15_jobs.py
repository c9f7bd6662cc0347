"""v1.5 video jobs in one process (no gRPC) on tiny random weights: every frame once, padded to whole
blocks and cut back, at the source's fps, no caption; v1 and v1.5 never share a cached output; a
version the stages do not serve is refused before any work."""

from __future__ import annotations

import pytest

from inspatio_world.jobs.local_stages import LocalStages
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import SUCCEEDED
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.runner import BlockPublished, StageFinished
from inspatio_world.media.decode import probe_video
from inspatio_world.refusals import FieldError, VersionNotServed
from inspatio_world.store.local import LocalStore

from tests.support.clips import write_sample_mp4
from tests.support.local_jobs import run_job, weights  # noqa: F401 (fixture)
from tests.support.per_frame_paths import sideways_path

FRAMES, FPS = 10, 25  # 10 frames pad to 21 (two blocks: 9 + 12), cut back to 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_sample_mp4(tmp_path_factory.mktemp("clip"), FRAMES, 64, 96, fps=FPS)


@pytest.fixture
def manager(tmp_path, weights):  # noqa: F811
    store = LocalStore(tmp_path / "store")
    manager = JobManager(store, LocalStages(store, weights, model_versions=("v1", "v1_5")), lease_seconds=2.0)
    yield manager
    manager.shutdown()


def _options(**fields) -> JobOptions:
    return JobOptions(**{"trajectory_text": sideways_path(FRAMES), "prompt": "a street with boxes", "model_version": "v1_5",
                         **fields})  # fmt: skip


def test_v15_job_keeps_every_frame_once_at_the_source_fps_and_never_shares_v1s_cache(manager, clip):
    job, events = run_job(manager, clip, _options())
    assert job.state == SUCCEEDED, job.error
    assert sorted(e.timing.stage for e in events if isinstance(e, StageFinished)) == ["depth", "generate", "render"]
    assert [(b.index, b.frames) for b in events if isinstance(b, BlockPublished)] == [(0, 9), (1, 1)]  # padding cut off
    for name in ("pred", "source", "render", "compare"):
        info = probe_video(manager.store.download(job.outputs[name], manager.store.root / f"{name}.mp4"))
        assert (info.frames, info.fps) == (FRAMES, FPS), name
    schedule = manager.store.get_bytes(job.stages["render"].keys["schedule"])
    assert b'"adjustment": "padded"' in schedule and b'"aligned_frames": 10' in schedule

    v1, _ = run_job(manager, clip, _options(model_version="v1"))  # same video, path and prompt
    assert v1.state == SUCCEEDED, v1.error
    for stage in ("depth", "render", "generate"):
        assert not v1.stages[stage].cache_hit, stage
        assert not set(v1.stages[stage].keys.values()) & set(job.stages[stage].keys.values()), stage
    again, _ = run_job(manager, clip, _options())
    assert all(again.stages[stage].cache_hit for stage in ("depth", "render", "generate"))


def test_v15_options_are_refused_before_any_work(manager, clip):
    video = manager.upload_video([clip.read_bytes()], "clip.mp4")
    with pytest.raises(FieldError, match="needs a prompt") as refused:
        manager.submit(_options(prompt=None), video)
    assert refused.value.field == "options.prompt"
    with pytest.raises(FieldError, match="time-freeze") as refused:
        manager.submit(_options(freeze_repeat=3), video)
    assert refused.value.field == "options.freeze_repeat"
    with pytest.raises(FieldError, match="model_version"):
        manager.submit(_options(model_version="v2"), video)
    assert manager.list() == []


def test_a_version_the_stages_do_not_serve_is_refused(tmp_path, weights, clip):  # noqa: F811
    store = LocalStore(tmp_path / "store")
    manager = JobManager(store, LocalStages(store, weights), lease_seconds=2.0)  # v1 only
    try:
        video = manager.upload_video([clip.read_bytes()], "clip.mp4")
        with pytest.raises(VersionNotServed, match="v1_5"):
            manager.submit(_options(), video)
        assert manager.list() == []
    finally:
        manager.shutdown()
