"""Everything knowable at submit is refused at submit (issue 11): a real coordinator gRPC server on
127.0.0.1, in process, over a JobManager with a LocalStore and a stage client that records (and
refuses) every call. Each bad job gets INVALID_ARGUMENT with a message naming the problem, no stage
is called, and not one new file appears in the store's folder; a valid job is still accepted.
"""

from __future__ import annotations

import io
import time

import grpc
import pytest
from PIL import Image

from inspatio_world import envvars
from inspatio_world.client import write_sample_video
from inspatio_world.jobs.manager import JobManager
from inspatio_world.rpc.generated import common_pb2, coordinator_pb2, coordinator_pb2_grpc
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.store.local import LocalStore
from services.coordinator.servicer import CoordinatorServicer
from tests.integration.test_bad_requests import _files

BUCKET = "inspatio-admission"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
TIMEOUT = 20
IDENTITY = "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"
WIDE_TURN = "0 0\n0 360 -360 360 -360 360 -360 360\n0 0\n"  # ~120 bytes of keyframes: 4680 deg of yaw (the 5851 frames)


class RecordingStages:
    """A stage client that refuses every call and remembers it: a refused job must call none."""

    model_versions = ("v1",)  # what it serves is known without calling a stage

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        self.calls.append(name)
        raise AssertionError(f"stage {name!r} called")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    png = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 30, 30)).save(png, format="PNG")
    return {
        "one": write_sample_video(folder / "one.mp4", 1, 32, 48).read_bytes(),
        "three": write_sample_video(folder / "three.mp4", 3, 32, 48).read_bytes(),
        "twelve": write_sample_video(folder / "twelve.mp4", 12, 32, 48).read_bytes(),
        "png": png.getvalue(),
    }


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory, clips):
    root = tmp_path_factory.mktemp("store")
    store = LocalStore(root, BUCKET)
    store.put_bytes("inputs/one.mp4", clips["one"])  # an s3:// input already in the bucket
    stages = RecordingStages()
    manager = JobManager(store, stages, max_parallel_jobs=1)
    server = ServiceServer([(coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server,
                             CoordinatorServicer(manager))], metrics_address=None).start()
    server.set_serving()
    channel = grpc.insecure_channel(server.address)
    try:
        yield root, coordinator_pb2_grpc.CoordinatorServiceStub(channel), stages
    finally:
        channel.close()
        server.stop(grace=0)
        manager.shutdown()


def _submit(stub, video, trajectory: str = "zoom_out_in.txt", **options):
    """SubmitJob with a shipped trajectory name or a trajectory's text (anything with a newline);
    `video`: bytes to upload, or an s3:// URI."""
    shipped = "\n" not in trajectory
    traj = common_pb2.Trajectory(shipped_name=trajectory) if shipped else common_pb2.Trajectory(text=trajectory)
    spec_options = common_pb2.JobOptions(trajectory=traj, **options)
    if isinstance(video, str):
        spec = coordinator_pb2.JobSpec(options=spec_options, video_uri=video)
        messages = [coordinator_pb2.SubmitJobRequest(spec=spec)]
    else:
        spec = coordinator_pb2.JobSpec(options=spec_options, upload_name="clip.mp4")
        messages = [coordinator_pb2.SubmitJobRequest(spec=spec), coordinator_pb2.SubmitJobRequest(chunk=video)]
    return stub.SubmitJob(iter(messages), timeout=TIMEOUT)


def _corrupt(data: bytes) -> bytes:
    return data[: len(data) // 3] + bytes(range(256)) * 4  # an mp4 cut short, then garbage


CASES = {
    # name: (clip, submit options, environment, fragments the message must contain)
    "one-frame-adaptive-off": ("one", {"disable_adaptive_frames": True}, {}, ["1 frames", "no whole block", "at least 9"]),
    "one-frame-s3-adaptive-off": (f"s3://{BUCKET}/inputs/one.mp4", {"disable_adaptive_frames": True}, {}, ["inputs/one.mp4", "no whole block"]),
    "still-png": ("png", {}, {}, ["still image", "png"]),
    "corrupt": ("corrupt", {}, {}, ["clip.mp4", "corrupt"]),
    "per-frame-wrong-count": ("twelve", {"trajectory": "\n".join([IDENTITY] * 5) + "\n"}, {},
                              ["5 cameras", "needs 12", "12 video frames"]),
    "per-frame-wrong-count-with-freeze": ("twelve", {"trajectory": "\n".join([IDENTITY] * 12) + "\n", "freeze_repeat": 4}, {},
                                          ["12 cameras", "needs 16", "freeze_repeat 4"]),
    "adaptive-plans-too-many": ("three", {"trajectory": WIDE_TURN}, {},
                                ["generate 5841 frames (487 blocks)", "to 5851", "limit of 1000", "INSPATIO_MAX_OUTPUT_FRAMES", "adaptive", "--no-adaptive-frames"]),
    "output-limit-set-low": ("three", {}, {envvars.MAX_OUTPUT_FRAMES.name: "100"}, ["generate 117 frames", "limit of 100"]),
    "render-only-over-limit": ("three", {"render_only": True}, {envvars.MAX_OUTPUT_FRAMES.name: "100"}, ["render 121 frames"]),
    "freeze-repeat-over-limit": ("three", {"freeze_repeat": 1001}, {}, ["freeze_repeat 1001", "1000", "INSPATIO_MAX_OUTPUT_FRAMES"]),
    "freeze-repeat-10000": ("three", {"freeze_repeat": 10000}, {}, ["freeze_repeat 10000"]),
    "pixels-over-limit": ("three", {}, {envvars.MAX_INPUT_PIXELS.name: "1000"}, ["48x32", "1536 pixels", "limit of 1000", "INSPATIO_MAX_INPUT_PIXELS"]),
    "frames-over-limit": ("twelve", {}, {envvars.MAX_INPUT_FRAMES.name: "10"}, ["12 frames", "limit of 10", "INSPATIO_MAX_INPUT_FRAMES"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_job_that_would_fail_later_is_refused_at_submit(coordinator, clips, monkeypatch, name):
    root, stub, stages = coordinator
    clip, options, environment, fragments = CASES[name]
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    video = clip if clip.startswith("s3://") else _corrupt(clips["three"]) if clip == "corrupt" else clips[clip]
    before = _files(root)
    with pytest.raises(grpc.RpcError) as caught:
        _submit(stub, video, **options)
    details = caught.value.details() or ""
    assert caught.value.code() == INVALID, details
    assert [f for f in fragments if f not in details] == [], details
    assert stages.calls == []
    assert _files(root) == before


def test_a_valid_job_is_still_accepted(coordinator, clips):
    root, stub, stages = coordinator
    job = _submit(stub, clips["three"])  # adaptive: 121 frames in, 117 generated, under the default limit
    assert job.job_id
    deadline = time.monotonic() + TIMEOUT
    while stub.GetJob(coordinator_pb2.GetJobRequest(job_id=job.job_id), timeout=TIMEOUT).state in (
            coordinator_pb2.JOB_STATE_QUEUED, coordinator_pb2.JOB_STATE_RUNNING) and time.monotonic() < deadline:  # fmt: skip
        time.sleep(0.05)
    assert stages.calls  # the accepted job went on to its stages (which this client refuses)
    stages.calls.clear()
