"""v1.5 jobs through the local stack (four real services on 127.0.0.1, tiny weights, CPU, a local
store), driven through the SDK and the CLI: a video job, a one-picture and a four-view image job; the
generator serves v1_5 only, so a v1 job is refused at SubmitJob with FAILED_PRECONDITION before its
upload is stored, and the generator itself refuses a request of the other version; bad pictures are
INVALID_ARGUMENT before anything is stored."""

from __future__ import annotations

import grpc
import pytest

from inspatio_world.client import AsyncClient, Client, JobOptions
from inspatio_world.media.decode import probe_video
from inspatio_world.rpc.generated import common_pb2, generator_pb2, generator_pb2_grpc

from tests.support.clips import write_sample_mp4
from tests.support.per_frame_paths import sideways_path
from tests.support.pictures import png_bytes
from tests.support.stacks import local_stack

FRAMES, FPS = 10, 25


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, store_dir, tiny_weights):
    store = store_dir
    with local_stack(store.as_uri(), tiny_weights.root, default_ports=False, log_dir=tmp_path_factory.mktemp("logs"),
                     extra_env={"INSPATIO_DEVICE": "cpu"}, model_version="v1_5") as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_sample_mp4(tmp_path_factory.mktemp("clip"), FRAMES, 64, 96, fps=FPS)


def _options(**fields) -> JobOptions:
    return JobOptions(**{"trajectory_text": sideways_path(FRAMES), "prompt": "a street with boxes", "model_version": "v1_5",
                         **fields})  # fmt: skip


def test_v15_video_job_through_the_sdk(stack, clip, tmp_path):
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        events = []
        final = client.wait(client.submit(clip, _options()).job_id, on_event=events.append)
        assert final.state == "succeeded", final.error
        assert final.options.model_version == "v1_5"
        assert {e.stage for e in events if e.kind == "stage_finished"} == {"depth", "render", "generate"}
        assert (final.blocks_done, final.blocks_total) == (2, 2)
        written = client.download(final, tmp_path)
        for name in ("pred", "source", "render", "compare"):
            info = probe_video(written[name])
            assert (info.frames, info.fps) == (FRAMES, FPS), name


def test_a_version_no_generator_serves_is_refused_at_submit(stack, clip):
    with Client(stack.addresses["coordinator"], timeout=60) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.submit(clip, _options(model_version="v1"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "model_version v1" in refused.value.details() and "INSPATIO_MODEL_VERSION=v1" in refused.value.details()
        assert all(job.options.model_version == "v1_5" for job in client.list())


def test_v15_without_a_prompt_is_invalid_through_the_async_sdk(stack, clip):
    async def submit():
        async with AsyncClient(stack.addresses["coordinator"], timeout=60) as client:
            await client.submit(clip, _options(prompt=None))

    import asyncio

    with pytest.raises(grpc.RpcError) as refused:
        asyncio.run(submit())
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "needs a prompt" in refused.value.details()


def test_the_generator_refuses_a_request_of_another_version(stack):
    request = generator_pb2.GenerateRequest(video=common_pb2.ObjectRef(key="uploads/x/clip.mp4"), prompt="p",
                                            model_version=common_pb2.MODEL_VERSION_V1)  # fmt: skip
    with grpc.insecure_channel(stack.addresses["generator"]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            next(generator_pb2_grpc.GeneratorServiceStub(channel).Generate(request, timeout=30))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "serves model_version v1_5" in refused.value.details()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i in range(4):
        paths.append(folder / f"view_{i}.png")
        paths[-1].write_bytes(png_bytes(96 + 8 * i, 64, seed=i))
    return paths


def _image_options() -> JobOptions:
    return JobOptions(trajectory_text=sideways_path(9), prompt="a room with a table", model_version="v1_5")


def test_one_picture_job_through_the_cli(stack, pictures, tmp_path):
    import subprocess
    import sys

    path = tmp_path / "slide.txt"
    path.write_text(sideways_path(9))
    done = subprocess.run([sys.executable, "-m", "inspatio_world.cli", "submit", "--image", str(pictures[0]), "--traj", str(path),
                           "--model-version", "v1_5", "--prompt", "a room", "--coordinator", stack.addresses["coordinator"]],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        final = client.wait(done.stdout.strip())
        assert final.state == "succeeded", final.error
        assert len(final.images) == 1 and final.video.key == ""
        assert probe_video(client.download(final, tmp_path)["pred"]).frames == 9


def test_four_view_job_through_the_async_sdk(stack, pictures, tmp_path):
    import asyncio

    async def run():
        async with AsyncClient(stack.addresses["coordinator"], timeout=120) as client:
            job = await client.submit_images(pictures, _image_options())
            return await client.wait(job.job_id)

    final = asyncio.run(run())
    assert final.state == "succeeded", final.error
    assert len(final.images) == 4 and set(final.timings) == {"image_render", "generate"}
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        info = probe_video(client.download(final, tmp_path)["pred"])
    assert (info.frames, info.fps) == (9, 15.0)


def test_bad_pictures_are_refused_before_anything_is_stored(stack, pictures, store_dir, tmp_path):
    def stored_uploads() -> list[str]:
        return sorted(str(p) for p in store_dir.rglob("*") if p.is_file() and "uploads" in p.parts)

    uploads = stored_uploads()
    assert uploads  # the jobs before put their inputs there
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture at all")
    with Client(stack.addresses["coordinator"], timeout=60) as client:
        for images, fragment in ((pictures[:2], "1 picture or 4 views"), ([junk], "images[0]")):
            with pytest.raises(grpc.RpcError) as refused:
                client.submit_images(images, _image_options())
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in refused.value.details() or fragment in str(refused.value.trailing_metadata())
        with pytest.raises(grpc.RpcError) as refused:
            client.submit_images(pictures[:1], JobOptions(trajectory_name="x_y_circle_cycle.txt", prompt="p", model_version="v1_5"))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "per-frame camera path" in refused.value.details()
    assert stored_uploads() == uploads


def test_a_picture_with_its_own_geometry_through_the_sdk(stack, pictures, tmp_path):
    import numpy as np

    from inspatio_world.geometry.supplied_geometry import encode_geometry

    geometry = tmp_path / "geometry.safetensors"
    K = np.array([[90.0, 0, 56], [0, 90.0, 32], [0, 0, 1]])
    geometry.write_bytes(encode_geometry(np.full((1, 64, 112), 3.0), K, np.eye(4)[None]))
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        final = client.wait(client.submit_images(pictures[:1], _image_options(), geometry=geometry).job_id)
        assert final.state == "succeeded", final.error
        with grpc.insecure_channel(stack.addresses["coordinator"]) as channel:
            from inspatio_world.rpc.generated import coordinator_pb2, coordinator_pb2_grpc

            job = coordinator_pb2_grpc.CoordinatorServiceStub(channel).GetJob(coordinator_pb2.GetJobRequest(job_id=final.job_id), timeout=30)
        assert job.geometry.key.endswith("/geometry.safetensors") and len(job.images) == 1
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(encode_geometry(np.full((4, 64, 112), 3.0), K, np.stack([np.eye(4)] * 4)))
        with pytest.raises(grpc.RpcError) as refused:
            client.submit_images(pictures[:1], _image_options(), geometry=bad)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "4 depth maps for 1 pictures" in refused.value.details()
