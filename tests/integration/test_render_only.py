"""Render-only jobs (upstream's --skip_step3): in process and through the real services, the job stops
after the render, publishes viewable render, mask and source videos, generates nothing, and leaves
the render in the cache for a later full job. The services here also run with the DiT checkpoint
outside the weights folder (INSPATIO_DIT_CHECKPOINT)."""

from __future__ import annotations

import shutil
import urllib.request

import grpc
import pytest
import torch

from inspatio_world.client import Client, JobOptions
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import SUCCEEDED, Manifest
from inspatio_world.jobs.runner import BlockPublished, StageFinished
from inspatio_world.media.decode import probe_video, read_frames
from inspatio_world.media.lossless import read_lossless_masks
from inspatio_world.pipeline.weights import override_env
from inspatio_world.rpc.generated import coordinator_pb2, coordinator_pb2_grpc
from inspatio_world.stages.artifacts import get_json

from tests.support.local_jobs import manager, run_job, video_file, weights  # noqa: F401 (fixtures)
from tests.support.stacks import local_stack

RENDER_SIZE = (64, 112)  # the tiny profile renders at 64x112
BUCKET = "inspatio-render-only-test"


def _run(manager: JobManager, video_file, **options) -> tuple[Manifest, list]:
    return run_job(manager, video_file, JobOptions(trajectory_name="orbit_left.txt", **options))


def test_render_only_job_publishes_the_render_and_generates_nothing(manager, video_file):
    job, events = _run(manager, video_file, render_only=True)
    assert job.state == SUCCEEDED, job.error
    assert sorted(job.outputs) == ["manifest", "mask", "render", "source"]
    assert (job.blocks_done, job.blocks_total) == (0, 0)
    assert not any(isinstance(e, BlockPublished) for e in events)
    assert [e.timing.stage for e in events if isinstance(e, StageFinished)][-2:] == ["render", "render_videos"]
    assert "generate" not in job.stages and "generator" not in job.weights
    store = manager.store
    # the render stage's schedule (9 frames bounced to 121 by the adaptive timing) in every video
    schedule = get_json(store, job.stages["render"].keys["schedule"])
    videos = {name: read_frames(store.download(job.outputs[name], store.root / f"{name}.mp4")) for name in ("source", "render", "mask")}
    for name, frames in videos.items():
        assert frames.shape == (len(schedule["render_index"]), 3, *RENDER_SIZE), name
        assert probe_video(store.root / f"{name}.mp4").codec == "h264"
    # frame for frame the render stage's lossless render and mask on its schedule (H.264 blurs edges)
    keys, order = job.stages["render"].keys, torch.tensor(schedule["render_index"])
    exact_render = read_frames(store.download(keys["render"], store.root / "render.mkv"))[order]
    exact_mask = read_lossless_masks(store.download(keys["mask"], store.root / "mask.mkv"))[order]
    assert (videos["render"] - exact_render).abs().mean() < 0.02
    mask = videos["mask"].mean(1)
    assert ((mask < 0.1) | (mask > 0.9)).float().mean() > 0.97  # black or white
    assert ((mask > 0.5) == exact_mask).float().mean() > 0.97  # white = rendered


def test_full_job_after_a_render_only_job_reuses_its_render(manager, video_file):
    render_only, _ = _run(manager, video_file, render_only=True, adaptive_frames=False)  # one block, to be quick
    full, _ = _run(manager, video_file, adaptive_frames=False)
    assert render_only.state == full.state == SUCCEEDED, full.error
    assert full.stages["render"].cache_hit and full.stages["render"].keys == render_only.stages["render"].keys
    assert not full.stages["generate"].cache_hit and full.blocks_done == full.blocks_total > 0
    store = manager.store
    # the render-only job's render and source are the full job's, to the last whole block (lossy codecs aside)
    for name in ("render", "source"):
        alone = read_frames(store.download(render_only.outputs[name], store.root / f"alone-{name}.mp4"))
        generated = read_frames(store.download(full.outputs[name], store.root / f"full-{name}.mp4"))
        assert generated.shape[0] <= alone.shape[0]
        assert (alone[: generated.shape[0]] - generated).abs().mean() < 0.02, name
    again, _ = _run(manager, video_file, render_only=True, adaptive_frames=False)  # nothing recomputed
    assert all(record.cache_hit for record in again.stages.values())
    assert again.outputs["render"] == render_only.outputs["render"]


def test_render_only_is_not_part_of_the_render_cache_key():
    plain = JobOptions(trajectory_name="orbit_left.txt").render_options()
    assert JobOptions(trajectory_name="orbit_left.txt", render_only=True).render_options() == plain


# --- through the real services -----------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(seaweedfs, weights, tmp_path_factory):
    # The generator finds its DiT checkpoint only through INSPATIO_DIT_CHECKPOINT.
    folder = shutil.copytree(weights.root, tmp_path_factory.mktemp("weights-split") / "checkpoints")
    moved = tmp_path_factory.mktemp("dit") / "my-dit.safetensors"
    shutil.move(folder / weights.dit_file.relative_to(weights.root), moved)
    seaweedfs.make_store(BUCKET)
    env = {"INSPATIO_S3_ACCESS_KEY": seaweedfs.access_key, "INSPATIO_S3_SECRET_KEY": seaweedfs.secret_key,
           "INSPATIO_DEVICE": "cpu", **override_env(dit_checkpoint=moved)}  # fmt: skip
    store_url = f"s3://{BUCKET}?endpoint={seaweedfs.endpoint}&secure=0"
    with local_stack(store_url, folder, default_ports=False, log_dir=tmp_path_factory.mktemp("logs"), extra_env=env) as running:
        yield running


def test_render_only_job_through_the_services(stack, video_file, tmp_path):
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        first = client.wait(client.submit(video_file, JobOptions.for_trajectory("pan_left.txt", adaptive_frames=False, render_only=True)).job_id)
        assert first.state == "succeeded", first.error
        assert (first.blocks_done, first.blocks_total) == (0, 0) and "pred" not in first.outputs
        assert "generate" not in first.timings and not first.timings["render"][1]
        written = client.download(first, tmp_path / "render-only")
        assert read_frames(written["render"]).shape[1:] == (3, *RENDER_SIZE)
        with grpc.insecure_channel(stack.addresses["coordinator"]) as channel:
            job = coordinator_pb2_grpc.CoordinatorServiceStub(channel).GetJob(coordinator_pb2.GetJobRequest(job_id=first.job_id), timeout=30)
        assert job.options.render_only and job.outputs.HasField("mask") and not job.outputs.HasField("pred")
        mask = tmp_path / "mask.mp4"
        mask.write_bytes(urllib.request.urlopen(job.outputs.mask.url).read())
        assert read_frames(mask).shape == read_frames(written["render"]).shape

        full = client.wait(client.submit(video_file, JobOptions.for_trajectory("pan_left.txt", adaptive_frames=False)).job_id)
        assert full.state == "succeeded", full.error
        assert full.timings["render"][1] and not full.timings["generate"][1]  # the render came from the cache
        pred = read_frames(client.download(full, tmp_path / "full")["pred"])
        assert pred.shape[1:] == (3, *RENDER_SIZE) and torch.isfinite(pred).all()
