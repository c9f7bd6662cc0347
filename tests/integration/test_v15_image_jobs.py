"""v1.5 image jobs in one process (no gRPC) on tiny random weights: one picture and four views run end
to end, cache and resume like videos, and bad image inputs are refused before anything is stored."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from inspatio_world.geometry.supplied_geometry import encode_geometry
from inspatio_world.jobs.local_stages import LocalStages
from inspatio_world.jobs import manifest as manifests
from inspatio_world.jobs.manager import JobManager, lease_key
from inspatio_world.jobs.manifest import RUNNING, SUCCEEDED, Manifest, VideoRef
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.runner import BlockPublished, JobFinished, StageFinished
from inspatio_world.media.decode import probe_video
from inspatio_world.media.image_inputs import ImageInputError
from inspatio_world.refusals import FieldError
from inspatio_world.store.local import LocalStore

from tests.support.local_jobs import weights  # noqa: F401 (fixture)
from tests.support.per_frame_paths import sideways_path
from tests.support.pictures import png_bytes

FRAMES = 9  # one block


@pytest.fixture
def manager(tmp_path, weights):  # noqa: F811
    store = LocalStore(tmp_path / "store")
    manager = JobManager(store, LocalStages(store, weights, model_versions=("v1_5",)), lease_seconds=2.0)
    yield manager
    manager.shutdown()


def _options(**fields) -> JobOptions:
    return JobOptions(**{"trajectory_text": sideways_path(FRAMES), "prompt": "a room with a table", "model_version": "v1_5",
                         **fields})  # fmt: skip


def _run(manager: JobManager, views: int, options: JobOptions):
    images = manager.add_images([(f"view_{i}.png", png_bytes(80 + 8 * i, 60, seed=i)) for i in range(views)])
    job = manager.submit(options, None, images=images)
    events = list(manager.watch(job.job_id))
    assert isinstance(events[-1], JobFinished)
    return events[-1].manifest, events


@pytest.mark.parametrize("views", [1, 4])
def test_image_job_end_to_end(manager, views):
    job, events = _run(manager, views, _options())
    assert job.state == SUCCEEDED, job.error
    assert len(job.images) == views and job.video.key == ""
    assert [e.timing.stage for e in events if isinstance(e, StageFinished)] == ["image_render", "generate"]
    assert [(b.index, b.frames) for b in events if isinstance(b, BlockPublished)] == [(0, FRAMES)]
    for name in ("pred", "source", "render", "compare"):
        info = probe_video(manager.store.download(job.outputs[name], manager.store.root / f"{name}.mp4"))
        assert (info.frames, info.fps, info.height) == (FRAMES, 15.0, 64), name
    assert job.caption == "a room with a table" and set(job.weights) == {"depth", "generator"}
    again, _ = _run(manager, views, _options())
    assert again.stages["image_render"].cache_hit and again.stages["generate"].cache_hit


def test_bad_image_jobs_are_refused_before_anything_is_stored(manager):
    two = [(f"v{i}.png", png_bytes(64, 48, seed=i)) for i in range(2)]
    with pytest.raises(ImageInputError, match="1 picture or 4 views"):
        manager.add_images(two)
    with pytest.raises(ImageInputError) as refused:
        manager.add_images([("v.png", b"not a picture")])
    assert refused.value.field == "images[0]"
    assert list(manager.store.list("uploads/")) == []
    images = manager.add_images([("v.png", png_bytes(64, 48))])
    with pytest.raises(FieldError, match="v1.5 feature"):
        manager.submit(_options(model_version="v1"), None, images=images)
    with pytest.raises(FieldError, match="per-frame camera path"):
        manager.submit(_options(trajectory_text="", trajectory_name="x_y_circle_cycle.txt"), None, images=images)
    with pytest.raises(FieldError, match="not both"):
        manager.submit(_options(), images[0], images=images)
    assert manager.list() == []


def test_an_unfinished_image_job_of_a_dead_coordinator_is_resumed(tmp_path, weights):  # noqa: F811
    store = LocalStore(tmp_path / "store")
    first = JobManager(store, LocalStages(store, weights, model_versions=("v1_5",)), lease_seconds=1.0)
    images = first.add_images([("view.png", png_bytes(80, 60))])
    first.shutdown()
    # What a coordinator that died mid-job leaves behind: a running manifest and an expired lease.
    orphan = manifests.save(store, Manifest.new(_options(), VideoRef("", ""), images=images).with_(state=RUNNING))
    assert manifests.load(store, orphan.job_id).images == images  # the pictures survive the manifest's round trip
    store.put_bytes(lease_key(orphan.job_id), json.dumps({"owner": "dead", "expires": time.time() - 1}).encode())
    second = JobManager(store, LocalStages(store, weights, model_versions=("v1_5",)), lease_seconds=1.0)
    try:
        assert second.resume_unfinished() == [orphan.job_id]
        final = [e for e in second.watch(orphan.job_id) if isinstance(e, JobFinished)][0].manifest
        assert final.state == SUCCEEDED, final.error
        assert "pred" in final.outputs
    finally:
        second.shutdown()


def _geometry(views: int, height: int = 64, width: int = 112) -> bytes:
    K = np.array([[100.0, 0, width / 2], [0, 100.0, height / 2], [0, 0, 1]])
    w2c = np.stack([np.eye(4)] * views)
    w2c[:, 0, 3] = np.arange(views) * 0.05
    return encode_geometry(np.full((views, height, width), 2.0), K, w2c)


def test_supplied_geometry_replaces_da3_and_is_checked_first(manager):
    picture = [("view.png", png_bytes(80, 60))]
    with pytest.raises(ImageInputError, match="2 depth maps for 1 pictures") as refused:
        manager.add_image_inputs(picture, ("geometry.safetensors", _geometry(2)))
    assert refused.value.field == "geometry"
    assert list(manager.store.list("uploads/")) == []  # not even the picture was stored
    images, geometry = manager.add_image_inputs(picture, ("geometry.safetensors", _geometry(1)))
    job = manager.submit(_options(), None, images=images, geometry=geometry)
    final = [e for e in manager.watch(job.job_id) if isinstance(e, JobFinished)][0].manifest
    assert final.state == SUCCEEDED, final.error
    assert final.geometry == geometry and "depth" not in final.weights  # no DA3 ran
    info = probe_video(manager.store.download(final.outputs["pred"], manager.store.root / "pred.mp4"))
    assert (info.frames, info.height, info.width) == (FRAMES, 64, 112)  # the pictures fitted to the depth maps
    with pytest.raises(FieldError, match="goes with images"):
        manager.submit(_options(), images[0], geometry=geometry)
