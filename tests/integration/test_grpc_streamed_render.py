"""The streamed render over gRPC: the coordinator's stage client (jobs/remote_stages.py) calls
GeneratorService.RenderAndGenerate, and the generator renders each block's frames just before the
block (stages/render_feed.py). Real servers on 127.0.0.1 (the depthrender and generator servicers
over tiny weights on the CPU), a folder store shared with the client, a job manager as the
coordinator runs it. The in-process equivalent is test_streamed_render.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
import torch

from inspatio_world import envvars
from inspatio_world.jobs.local_stages import depth_identity, generator_identity, load_estimator
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import SUCCEEDED, VideoRef
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.remote_stages import RemoteStages, StageCallFailed
from inspatio_world.jobs.runner import BlockPublished, StageFinished
from inspatio_world.media.decode import read_images
from inspatio_world.pipeline.generator import VideoGenerator
from inspatio_world.pipeline.models import GeneratorModels
from inspatio_world.rpc.convert import render_options_to_proto
from inspatio_world.rpc.generated import common_pb2, depthrender_pb2_grpc, generator_pb2, generator_pb2_grpc
from inspatio_world.rpc.metrics import ServiceMetrics
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.stages.generate import GenerateOutput
from inspatio_world.stages.render import RenderOutput
from inspatio_world.store.local import LocalStore
from services.coordinator.main import stage_client
from services.depthrender.servicer import DepthRenderServicer
from services.generator.servicer import GeneratorServicer

from tests.support.clips import H264_RUN_TO_RUN_LEVELS, write_sample_mp4
from tests.support.local_jobs import HEIGHT, WIDTH, run_job, weights  # noqa: F401 (fixtures)

# 12 latents = 4 blocks; block 0 needs render frames 0-8. The generator runs at most two blocks ahead of
# the block being handed over (stages/generate.py), so the render is complete only after block 0.
FRAMES = 45
PROMPT = "a quiet street"  # a prompt skips the captioner: no caption service is needed
OPTIONS = JobOptions(trajectory_name="x_y_circle_cycle.txt", adaptive_frames=False, seed=7, prompt=PROMPT)
VIDEOS = ("pred", "source", "render", "compare")
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    return write_sample_mp4(tmp_path_factory.mktemp("clip"), FRAMES, HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def models(weights):
    """The depth estimator and the generator (Wan VAE only: TAEHV is not loaded), shared by every server."""
    generator = VideoGenerator(GeneratorModels.load(weights, CPU, ("wan_vae",)))
    return load_estimator(weights, CPU), generator


@pytest.fixture
def serve(weights, models) -> Iterator:
    """`serve(store)`: a server with the depthrender and generator services over `store`; its address."""
    estimator, generator = models
    servers = []

    def start(store: LocalStore) -> str:
        servicers = [
            (depthrender_pb2_grpc.add_DepthRenderServiceServicer_to_server,
             DepthRenderServicer(store, estimator, depth_identity(weights), CPU, ServiceMetrics())),
            (generator_pb2_grpc.add_GeneratorServiceServicer_to_server,
             GeneratorServicer(store, generator, generator_identity(weights, ("wan_vae",)), ServiceMetrics(), CPU)),
        ]  # fmt: skip
        servers.append(ServiceServer(servicers, metrics_address=None).start())
        return servers[-1].address

    yield start
    for server in servers:
        server.stop(grace=0)


def _stages(store: LocalStore, address: str, stream: bool) -> RemoteStages:
    # caption is never called (the jobs have a prompt): any address will do
    return RemoteStages(store, address, address, address, attempts=2, backoff_s=0.05, stream_render=stream)


def _job(store: LocalStore, address: str, video_file, stream: bool, **options):
    stages = _stages(store, address, stream)
    manager = JobManager(store, stages, lease_seconds=2.0)
    try:
        return run_job(manager, video_file, replace(OPTIONS, **options))
    finally:
        manager.shutdown()
        stages.close()


def _first(events, kind, test=lambda e: True) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, kind) and test(e))


def _render_done(event) -> bool:
    return event.timing.stage == "render"


def _frames(store: LocalStore, key: str, folder):
    return read_images(store.download(key, folder / ("frames" + key[key.rindex("."):])))


def test_a_streamed_job_over_grpc_equals_the_render_then_generate_job(tmp_path, serve, video_file):
    whole_store, streamed_store = LocalStore(tmp_path / "whole"), LocalStore(tmp_path / "streamed")
    whole, whole_events = _job(whole_store, serve(whole_store), video_file, stream=False)
    streamed, streamed_events = _job(streamed_store, serve(streamed_store), video_file, stream=True)
    assert whole.state == streamed.state == SUCCEEDED, (whole.error, streamed.error)
    assert whole.blocks_total == streamed.blocks_total == whole.blocks_done == streamed.blocks_done == 4

    # The order of the job's events: the streamed job's first block comes before its render is finished.
    assert _first(whole_events, StageFinished, _render_done) < _first(whole_events, BlockPublished)
    assert _first(streamed_events, BlockPublished) < _first(streamed_events, StageFinished, _render_done)
    assert [e.index for e in streamed_events if isinstance(e, BlockPublished)] == [0, 1, 2, 3]

    # The same render under the same content keys (not a cache hit), and from it the same frames.
    render_keys = streamed.stages["render"].keys
    assert render_keys == whole.stages["render"].keys and not streamed.stages["render"].cache_hit
    assert streamed_store.get_bytes(render_keys["schedule"]) == whole_store.get_bytes(render_keys["schedule"])
    for name in ("render", "mask"):  # lossless: frame for frame (the .mkv bytes hold random UIDs)
        a, b = _frames(whole_store, render_keys[name], tmp_path), _frames(streamed_store, render_keys[name], tmp_path)
        assert a.shape[0] == FRAMES and (a == b).all(), name
    # The generated videos' keys hash the render's bytes, whose .mkv holds random UIDs: they differ between
    # two stores. H.264 is not reproducible between two runs either, so the videos are held to a tolerance.
    for name in VIDEOS:
        a, b = _frames(whole_store, whole.outputs[name], tmp_path), _frames(streamed_store, streamed.outputs[name], tmp_path)
        assert a.shape == b.shape and a.shape[0] == FRAMES, name
        assert (a.float() - b.float()).abs().mean() < H264_RUN_TO_RUN_LEVELS, name
    # The lossless per-block frames are bit for bit the render-then-generate job's.
    whole_blocks = [e for e in whole_events if isinstance(e, BlockPublished)]
    streamed_blocks = [e for e in streamed_events if isinstance(e, BlockPublished)]
    for a, b in zip(whole_blocks, streamed_blocks, strict=True):
        frames = _frames(whole_store, a.key, tmp_path), _frames(streamed_store, b.key, tmp_path)
        assert frames[0].shape[0] == a.frames and (frames[0] == frames[1]).all()


def _streamed_events(stages: RemoteStages, store: LocalStore, video_file, seed: int) -> list:
    """One RenderAndGenerate call through the stage client, depth first (over gRPC too)."""
    video = VideoRef("uploads/clip.mp4", "", frames=FRAMES)
    store.put_file(video.key, video_file)
    depth = stages.depth(video, force=False)
    return list(stages.render_and_generate(video, depth.key, OPTIONS.render_options(), PROMPT, seed, "wan_vae", force=False))


def test_render_and_generate_hands_over_a_block_before_the_render_and_uses_a_cached_render(tmp_path, serve, video_file):
    store = LocalStore(tmp_path / "store")
    stages = _stages(store, serve(store), stream=True)
    try:
        first = _streamed_events(stages, store, video_file, seed=7)
        # Order, not timing: block 0 needs only render frames 0-8 of 45, so it comes before the render,
        # which is handed over once, before the output.
        kinds = [type(e) for e in first]
        assert kinds[0] is BlockPublished and kinds[-1] is GenerateOutput and kinds.count(RenderOutput) == 1
        assert [e.index for e in first if isinstance(e, BlockPublished)] == [0, 1, 2, 3]
        render = first[kinds.index(RenderOutput)]
        assert not render.timing.cache_hit and render.frames == FRAMES
        assert all(store.exists(key) for key in (render.schedule_key, render.render_key, render.mask_key))
        assert all(store.exists(key) for key in first[-1].keys.values())

        # Another seed on the same video and trajectory: the render comes from the store, first, as it is.
        second = _streamed_events(stages, store, video_file, seed=8)
        assert [type(e) for e in second] == [RenderOutput, *[BlockPublished] * 4, GenerateOutput]
        cached = second[0]
        assert cached.timing.cache_hit
        assert (cached.schedule_key, cached.render_key, cached.mask_key) == (render.schedule_key, render.render_key, render.mask_key)
        # Generated from the cached render as Generate does: its blocks sit beside the video they make up.
        pred_folder = second[-1].keys["pred"].rsplit("/", 1)[0]
        assert all(e.key.startswith(pred_folder + "/") for e in second if isinstance(e, BlockPublished))
        assert second[-1].keys["pred"] != first[-1].keys["pred"]
    finally:
        stages.close()


def test_a_job_on_a_cached_render_records_the_cache_hit(tmp_path, serve, video_file):
    store = LocalStore(tmp_path / "store")
    address = serve(store)
    rendered, _ = _job(store, address, video_file, stream=True, render_only=True)  # DepthRenderService.Render
    full, events = _job(store, address, video_file, stream=True)
    assert rendered.state == full.state == SUCCEEDED, full.error
    assert full.stages["render"].cache_hit and full.stages["render"].keys == rendered.stages["render"].keys
    assert _first(events, StageFinished, _render_done) < _first(events, BlockPublished)
    assert full.blocks_done == full.blocks_total == 4 and store.exists(full.outputs["pred"])


def _request(store: LocalStore, **changes) -> generator_pb2.RenderAndGenerateRequest:
    fields = dict(video=common_pb2.ObjectRef(key="uploads/clip.mp4"), depth=common_pb2.ObjectRef(key="cache/depth/x/depth.safetensors"),
                  options=render_options_to_proto(OPTIONS.render_options(), False), prompt=PROMPT,
                  autoencoder=common_pb2.AUTOENCODER_WAN_VAE)  # fmt: skip
    return generator_pb2.RenderAndGenerateRequest(**{**fields, **changes})


BAD_TRAJECTORY = common_pb2.JobOptions(trajectory=common_pb2.Trajectory(text="0 0 0\n1 2 nan\n"))


@pytest.mark.parametrize(("changes", "message"), [
    ({"options": BAD_TRAJECTORY}, "trajectory"),
    ({"options": common_pb2.JobOptions()}, "give exactly one trajectory"),
    ({"options": common_pb2.JobOptions(trajectory=common_pb2.Trajectory(shipped_name="orbit_left.txt"), freeze_repeat=-1)},
     "freeze_repeat"),
    ({"prompt": "  "}, "prompt is empty"),
    ({"autoencoder": common_pb2.AUTOENCODER_TAEHV}, "not loaded on this generator"),
    ({"depth": common_pb2.ObjectRef()}, "depth: object reference has no key"),
])  # fmt: skip
def test_bad_render_and_generate_requests_are_invalid_argument_before_any_work(tmp_path, serve, changes, message):
    store = LocalStore(tmp_path / "store")
    with grpc.insecure_channel(serve(store)) as channel:
        stub = generator_pb2_grpc.GeneratorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            list(stub.RenderAndGenerate(_request(store, **changes), timeout=30))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert message in caught.value.details()
    assert list(store.list()) == []  # checked before any object was read or written (none exists here)


def test_the_stage_client_does_not_reopen_a_refused_render_and_generate(tmp_path, serve):
    store = LocalStore(tmp_path / "store")
    stages = _stages(store, serve(store), stream=True)
    bad = replace(OPTIONS.render_options(), trajectory_text="0 0 0\n1 2 nan\n")
    try:
        with pytest.raises(StageCallFailed, match="render\\+generate: INVALID_ARGUMENT: .*trajectory") as caught:
            list(stages.render_and_generate(VideoRef("uploads/clip.mp4", "x"), "cache/depth/x/depth.safetensors", bad, PROMPT, 0,
                                            "wan_vae", force=False))  # fmt: skip
        assert "attempts" not in str(caught.value)
    finally:
        stages.close()


@pytest.mark.parametrize(("value", "streams"), [(None, True), ("1", True), ("0", False)])
def test_the_coordinator_streams_the_render_unless_told_not_to(tmp_path, monkeypatch, value, streams):
    if value is None:
        monkeypatch.delenv(envvars.STREAM_RENDER.name, raising=False)
    else:
        monkeypatch.setenv(envvars.STREAM_RENDER.name, value)
    stages = stage_client(LocalStore(tmp_path / "store"))
    assert stages.streams_render is streams
    stages.close()


def test_a_typo_in_the_streaming_switch_stops_the_coordinator(tmp_path, monkeypatch):
    monkeypatch.setenv(envvars.STREAM_RENDER.name, "yes")
    with pytest.raises(ValueError, match="INSPATIO_STREAM_RENDER"):
        stage_client(LocalStore(tmp_path / "store"))
