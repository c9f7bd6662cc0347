"""Hostile requests against a real coordinator gRPC server on 127.0.0.1 (issue 11).

The coordinator servicer runs in process over a JobManager with a LocalStore and a stage client that
fails if it is ever called: every request here must be refused before any stage runs. For each bad
request: the exact status (INVALID_ARGUMENT or NOT_FOUND, never UNAVAILABLE, which clients retry, nor
INTERNAL; RESOURCE_EXHAUSTED for a message over the server's receive limit), the request field named
in its google.rpc BadRequest details where one is to blame, health still SERVING afterwards, not one
new file in the store's folder (objects, versions or temporary files) and no upload or probe folder
left in the server's temporary folder.

The table is generated: videos (corrupt, truncated, still images, too large, too many frames, too
short, empty, other kinds of file, audio only), trajectories (malformed, NaN/inf, out of range, wrong
per-frame count, turns that plan too many frames), every option's range, names, keys, URIs and job
ids, protocol abuse (no spec, spec twice, chunks in the wrong place, undecodable bytes, unknown enum
values) and oversized messages. `test_the_table_is_large_enough` prints "clean/total".
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from inspatio_world import envvars
from inspatio_world.client import error_details, write_sample_video
from inspatio_world.jobs import manager as jobs_manager
from inspatio_world.jobs.manager import JobManager
from inspatio_world.rpc.errors import ErrorMap, decoded, decoded_stream, lenient_deserializer
from inspatio_world.rpc.generated import common_pb2, coordinator_pb2, coordinator_pb2_grpc
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.store.local import LocalStore
from services.coordinator.servicer import CoordinatorServicer

BUCKET = "inspatio-bad-requests"
SERVICE = "/inspatio.world.v1.CoordinatorService/"
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
TOO_LARGE = grpc.StatusCode.RESOURCE_EXHAUSTED
TIMEOUT = 10
MAX_RECEIVE = 4 << 20  # grpc's default limit on a received message; the server keeps it
SERVER_TEMP_PREFIXES = ("inspatio-upload-", "inspatio-probe-")  # jobs/manager.py's temporary folders
IDENTITY = "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"
WIDE_TURN = "0 0\n0 360 -360 360 -360 360 -360 360\n0 0\n"  # 4680 deg of yaw: the adaptive rule plans 5851 frames
SPEC, OPTIONS = "spec", "spec.options"
UPLOAD, URI, TEXT = "spec.upload_name", "spec.video_uri", "spec.options.trajectory.text"
CLEAN: list[str] = []  # cases that passed, for the closing count


class NoStages:
    """A stage client for requests that must never reach a stage."""

    model_versions = ("v1",)  # what it serves is known without calling a stage

    def __getattr__(self, name):
        raise AssertionError(f"stage {name!r} called for a request that should have been refused")


def _audio_only(path: Path) -> bytes:
    """An mp4 holding one AAC audio stream and no video."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        for index in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


def _image(kind: str) -> bytes:
    data = io.BytesIO()
    Image.new("RGB", (48, 32), (200, 30, 30)).save(data, format=kind)
    return data.getvalue()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("clips")
    three = write_sample_video(folder / "three.mp4", 3, 32, 48).read_bytes()
    return {
        "three": three, "one": write_sample_video(folder / "one.mp4", 1, 32, 48).read_bytes(),
        "twelve": write_sample_video(folder / "twelve.mp4", 12, 32, 48).read_bytes(),
        "png": _image("PNG"), "jpeg": _image("JPEG"), "bmp": _image("BMP"), "gif": _image("GIF"),
        "audio-only": _audio_only(folder / "tone.m4a"),
        "truncated": three[: len(three) // 2], "header-only": three[:64],
        "corrupt": three[: len(three) // 3] + bytes(range(256)) * 4, "garbage": bytes(range(256)) * 8,
        "text": b"this is not a video\n" * 20, "zip": b"PK\x03\x04" + bytes(200), "empty": b"",
    }


@pytest.fixture(scope="module")
def server_temp(tmp_path_factory):
    """The server runs in this process: its temporary folders go to a folder of the test's own."""
    folder = tmp_path_factory.mktemp("server-temp")
    saved, tempfile.tempdir = tempfile.tempdir, str(folder)
    try:
        yield folder
    finally:
        tempfile.tempdir = saved


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory, clips, server_temp):
    root = tmp_path_factory.mktemp("store")
    store = LocalStore(root, BUCKET)
    store.put_bytes("notes/readme.txt", b"not a video")  # a real object that is not a video
    store.put_bytes("inputs/three.mp4", clips["three"])  # a good video already in the bucket
    for name, data in clips.items():
        if data:
            store.put_bytes(f"bad/{name}", data)
    manager = JobManager(store, NoStages(), max_parallel_jobs=1)
    server = ServiceServer([(coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server,
                             CoordinatorServicer(manager))], metrics_address=None).start()
    server.set_serving()
    channel = grpc.insecure_channel(server.address)
    try:
        yield root, channel
    finally:
        channel.close()
        server.stop(grace=0)
        manager.shutdown()


def _files(root: Path) -> list[str]:
    """Every file and folder under the store's root (objects, version files, temp files)."""
    return sorted(os.path.relpath(os.path.join(folder, name), root)
                  for folder, dirs, files in os.walk(root) for name in dirs + files)


def _server_temp_left(folder: Path) -> list[str]:
    """The server's upload/probe folders still in `folder`, after giving it a moment: a call the
    transport ends (an oversized message) reaches the servicer's cleanup just after the client's status."""
    deadline = time.monotonic() + 5
    while (left := sorted(p.name for p in folder.iterdir() if p.name.startswith(SERVER_TEMP_PREFIXES))) and (
            time.monotonic() < deadline):  # fmt: skip
        time.sleep(0.05)
    return left


def _spec(trajectory: str = "zoom_out_in.txt", options: dict | None = None, **video) -> coordinator_pb2.SubmitJobRequest:
    """A SubmitJob spec: a shipped trajectory name, or a trajectory's text (anything with a newline or
    empty), and the JobOptions fields in `options`."""
    shipped = trajectory and "\n" not in trajectory
    traj = common_pb2.Trajectory(shipped_name=trajectory) if shipped else common_pb2.Trajectory(text=trajectory)
    spec_options = common_pb2.JobOptions(trajectory=traj, **(options or {}))
    return coordinator_pb2.SubmitJobRequest(spec=coordinator_pb2.JobSpec(options=spec_options, **video))


def _upload(clip: str = "three", trajectory: str = "zoom_out_in.txt", name: str = "clip.mp4", **options) -> list:
    """SubmitJob messages uploading the clip `clip` (a "CLIP:" placeholder, filled in by _materialize)."""
    return [_spec(trajectory, options, upload_name=name), f"CLIP:{clip}"]


def _raw(channel: grpc.Channel, method: str, kind: str, payload):
    """Call `method` with bytes as they are (identity serializers): undecodable requests."""
    call = getattr(channel, kind)(SERVICE + method, request_serializer=None, response_deserializer=None)
    if kind == "unary_stream":
        return list(call(payload, timeout=TIMEOUT))
    return call(payload, timeout=TIMEOUT)


def _stub_call(method: str, request):
    def call(channel: grpc.Channel):
        stub = coordinator_pb2_grpc.CoordinatorServiceStub(channel)
        if method == "WatchJob":
            return list(stub.WatchJob(request, timeout=TIMEOUT))
        if method == "SubmitJob":
            return stub.SubmitJob(iter(request), timeout=TIMEOUT)
        return getattr(stub, method)(request, timeout=TIMEOUT)

    return call


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    call: Callable | list  # a call(channel), or SubmitJob's messages (with "CLIP:"/"RAW" placeholders)
    code: grpc.StatusCode
    fragment: str  # the message must contain it (lower case)
    field: str | None = None  # BadRequest.FieldViolation.field; None: the details name no field
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # the deployment's limits for this request
    upload_limit: int | None = None  # jobs.manager.MAX_UPLOAD_BYTES for this request


JOB_REQUESTS = {"GetJob": coordinator_pb2.GetJobRequest, "WatchJob": coordinator_pb2.WatchJobRequest,
                "CancelJob": coordinator_pb2.CancelJobRequest}
BAD_JOB_IDS = {"dotdot": "..", "dot": ".", "absolute": "/abs", "nul": "a\x00b", "newline": "a\nb",
               "long-2000": "x" * 2000, "long-300": "x" * 300, "empty": "", "non-ascii": "ü",
               "slash": "a/b", "traversal": "../jobs/x"}
BAD_VIDEO_KEYS = {"dotdot": "..", "absolute": "/abs.mp4", "nul": "a\x00b.mp4", "long-2000": "x" * 2000,
                  "part-300": "y" * 300 + ".mp4", "traversal": "uploads/../notes/readme.txt",
                  "empty-part": "notes//readme.txt", "trailing-slash": "notes/", "reserved": ".inspatio-tmp-x",
                  "backslash": "notes\\readme.txt", "escape": "a\x1bb.mp4", "del": "a\x7fb.mp4",
                  "dot-part": "inputs/./three.mp4"}
BAD_UPLOAD_NAMES = {"empty": "", "dot": ".", "dotdot": "..", "dir-dotdot": "videos/..", "slash": "/",
                    "trailing-slash": "videos/", "nul": "a\x00b.mp4", "newline": "a\nb.mp4",
                    "long-300": "x" * 300 + ".mp4", "long-utf8": "ü" * 200 + ".mp4", "reserved": ".inspatio-tmp-x.mp4",
                    "long-2000": "x" * 2000, "backslash-dotdot": "c:\\videos\\..", "tab": "a\tb.mp4"}
# Files that are not a usable video, uploaded or named by video_uri: (clip, message fragment).
NOT_VIDEOS = {"corrupt": "corrupt", "truncated": "not a video", "header-only": "not a video",
              "garbage": "not a video", "text": "not a video", "zip": "not a video", "audio-only": "no video stream",
              "png": "still image", "jpeg": "still image", "bmp": "still image", "gif": "still image"}
BAD_TRAJECTORIES = {  # text: (message fragment)
    "words": ("hello\n", "not a number"), "hex": ("0x10 0\n0 0\n1 1\n", "not a number"),
    "nan": ("nan 0\n0 0\n1 1\n", "not a finite number"), "inf": ("0 0\ninf 0\n1 1\n", "not a finite number"),
    "minus-inf": ("0 0\n0 0\n-inf 1\n", "not a finite number"),
    "nan-matrix": (" ".join(["nan"] * 16) + "\n", "not a finite number"),
    "two-lines": ("0 0\n0 0\n", "found 2 lines"), "four-lines": ("0 0\n0 0\n1 1\n0 0\n", "found 4 lines"),
    "one-short-line": ("1 2 3\n", "found 1 lines"), "blank-lines": ("\n\n", "no trajectory lines"),
    "pitch-1e308": ("0 1e308\n0 0\n1 1\n", "outside [-360, 360]"), "yaw-1e9": ("0 0\n0 1e9\n1 1\n", "outside [-360, 360]"),
    "zero-matrix": ("0 " * 16 + "\n", "last row"), "huge-rotation": ("1e300 " + IDENTITY[2:] + "\n", "orthonormal"),
}


def _cases():
    for method, request in JOB_REQUESTS.items():
        for name, job_id in BAD_JOB_IDS.items():
            yield Case(f"{method}-{name}", _stub_call(method, request(job_id=job_id)), INVALID, "job id", "job_id")
        yield Case(f"{method}-unknown", _stub_call(method, request(job_id="no-such-job")), NOT_FOUND, "no-such-job")
    for name, key in BAD_VIDEO_KEYS.items():
        yield Case(f"video_uri-{name}", [_spec(video_uri=f"s3://{BUCKET}/{key}")], INVALID, "key", URI)
    yield from _uri_cases()
    for name, upload in BAD_UPLOAD_NAMES.items():
        yield Case(f"upload_name-{name}", _upload(name=upload), INVALID, "upload_name", UPLOAD)
    yield from _video_cases()
    yield from _trajectory_cases()
    yield from _option_cases()
    for limit in (-1, -1000, -(2**31)):
        yield Case(f"ListJobs-limit{limit}", _stub_call("ListJobs", coordinator_pb2.ListJobsRequest(limit=limit)),
                   INVALID, "limit", "limit")
    yield from _protocol_cases()
    yield from _oversized_cases()


def _uri_cases():
    uri = f"s3://{BUCKET}/"
    yield Case("video_uri-missing", [_spec(video_uri=f"{uri}uploads/nope.mp4")], NOT_FOUND, "not found")
    yield Case("video_uri-folder", [_spec(video_uri=f"{uri}notes")], NOT_FOUND, "not found")
    yield Case("video_uri-not-a-video", [_spec(video_uri=f"{uri}notes/readme.txt")], INVALID, "readme.txt", URI)
    for name, value in {"other-bucket": "s3://someone-elses-bucket/inputs/three.mp4", "http": "http://example.com/a.mp4",
                        "file": "file:///etc/passwd", "no-key": uri, "no-slash": f"s3://{BUCKET}", "empty": "",
                        "bucket-prefix": f"s3://{BUCKET}x/inputs/three.mp4", "upper-scheme": f"S3://{BUCKET}/inputs/three.mp4",
                        "relative": "inputs/three.mp4"}.items():
        yield Case(f"video_uri-{name}", [_spec(video_uri=value)], INVALID, "video_uri", URI)


def _video_cases():
    for clip, fragment in NOT_VIDEOS.items():
        yield Case(f"upload-{clip}", _upload(clip), INVALID, fragment, UPLOAD)
        yield Case(f"video_uri-{clip}", [_spec(video_uri=f"s3://{BUCKET}/bad/{clip}")], INVALID, fragment, URI)
    yield Case("upload-empty", _upload("empty"), INVALID, "empty", UPLOAD)
    yield Case("upload-no-chunks", [_spec(upload_name="clip.mp4")], INVALID, "empty", UPLOAD)
    yield Case("upload-empty-chunks", [_spec(upload_name="clip.mp4")] + [coordinator_pb2.SubmitJobRequest(chunk=b"")] * 4,
               INVALID, "empty", UPLOAD)
    yield Case("upload-over-the-byte-limit", _upload(), INVALID, "upload larger", UPLOAD, upload_limit=1000)
    pixels, frames, output = envvars.MAX_INPUT_PIXELS.name, envvars.MAX_INPUT_FRAMES.name, envvars.MAX_OUTPUT_FRAMES.name
    yield Case("upload-too-many-pixels", _upload(), INVALID, "1536 pixels", UPLOAD, {pixels: "1000"})
    yield Case("video_uri-too-many-pixels", [_spec(video_uri=f"s3://{BUCKET}/inputs/three.mp4")], INVALID,
               "1536 pixels", URI, {pixels: "1000"})
    yield Case("upload-too-many-frames", _upload("twelve"), INVALID, "12 frames exceed", UPLOAD, {frames: "10"})
    yield Case("upload-one-frame-no-block", _upload("one", disable_adaptive_frames=True), INVALID, "no whole block", UPLOAD)
    yield Case("upload-three-frames-no-block", _upload(disable_adaptive_frames=True), INVALID, "no whole block", UPLOAD)
    yield Case("upload-output-over-limit", _upload(), INVALID, "limit of 100", "spec.options.trajectory.shipped_name",
               {output: "100"})
    yield Case("upload-render-only-over-limit", _upload(render_only=True), INVALID, "render 121 frames",
               "spec.options.trajectory.shipped_name", {output: "100"})
    yield Case("upload-render-only-freeze-over-limit", _upload("twelve", render_only=True, freeze_repeat=995,
               disable_adaptive_frames=True), INVALID, "freeze_repeat 995 included", f"{OPTIONS}.freeze_repeat")


def _trajectory_cases():
    for name, (text, fragment) in BAD_TRAJECTORIES.items():
        yield Case(f"trajectory-{name}", _upload(trajectory=text), INVALID, fragment, TEXT)
    yield Case("trajectory-none", _upload(trajectory=""), INVALID, "exactly one trajectory", f"{OPTIONS}.trajectory")
    for name, shipped in {"unknown": "no_such_path.txt", "traversal": "../../etc/passwd.txt", "absolute": "/etc/passwd",
                          "nul": "zoom_out_in.txt\x00"}.items():
        yield Case(f"trajectory-shipped-{name}", _upload(trajectory=shipped), INVALID, "unknown shipped trajectory",
                   "spec.options.trajectory.shipped_name")
    yield Case("trajectory-wide-turn", _upload(trajectory=WIDE_TURN), INVALID, "generate 5841 frames", TEXT)
    for lines in (1, 2, 5, 300):
        yield Case(f"trajectory-per-frame-{lines}-for-3", _upload(trajectory="\n".join([IDENTITY] * lines) + "\n"),
                   INVALID, f"has {lines} cameras", TEXT)
    yield Case("trajectory-per-frame-without-the-freeze", _upload(trajectory="\n".join([IDENTITY] * 3) + "\n",
               freeze_repeat=2), INVALID, "needs 5", TEXT)


def _option_cases():
    for value in (-1, -(2**31), 10_001, 2**31 - 1):
        yield Case(f"freeze_repeat-{value}", _upload(freeze_repeat=value), INVALID, f"freeze_repeat {value}",
                   f"{OPTIONS}.freeze_repeat")
    yield Case("freeze_repeat-over-output-limit", _upload(freeze_repeat=1001), INVALID, "limit of 1000",
               f"{OPTIONS}.freeze_repeat")
    for value in (-1, -(2**31)):
        yield Case(f"freeze_frame-{value}", _upload(freeze_frame=value), INVALID, "must be >= 0", f"{OPTIONS}.freeze_frame")
    for value in (3, 99, -5):
        yield Case(f"autoencoder-enum-{value}", _upload(autoencoder=value), INVALID, f"enum value {value}",
                   f"{OPTIONS}.autoencoder")
    for name, prompt in {"empty": "", "blank": " \t\n"}.items():
        yield Case(f"prompt-{name}", _upload(prompt=prompt), INVALID, "prompt is empty", f"{OPTIONS}.prompt")


def _protocol_cases():
    spec, chunk = _spec(upload_name="clip.mp4"), coordinator_pb2.SubmitJobRequest(chunk=b"\x00" * 16)
    first = "first submitjob message must carry the job spec"
    yield Case("protocol-no-messages", [], INVALID, first)
    yield Case("protocol-chunk-first", [chunk, spec], INVALID, first)
    yield Case("protocol-empty-message-first", [coordinator_pb2.SubmitJobRequest()], INVALID, first)
    yield Case("protocol-spec-twice", [spec, spec], INVALID, "chunks only")
    yield Case("protocol-spec-after-chunk", [spec, "CLIP:three", spec], INVALID, "chunks only")
    yield Case("protocol-empty-message-after-spec", [spec, "CLIP:three", coordinator_pb2.SubmitJobRequest()],
               INVALID, "chunks only")
    yield Case("protocol-spec-names-no-video", [_spec()], INVALID, "names no video")
    yield Case("protocol-chunks-after-video_uri", [_spec(video_uri=f"s3://{BUCKET}/inputs/three.mp4"), chunk], INVALID,
               "only with upload_name")
    for method, kind in (("GetJob", "unary_unary"), ("WatchJob", "unary_stream"), ("CancelJob", "unary_unary"),
                         ("ListJobs", "unary_unary")):
        for name, payload in (("ff", b"\xff"), ("truncated", b"\x0a\x05ab")):
            yield Case(f"undecodable-{method}-{name}", (lambda m, k, p: lambda ch: _raw(ch, m, k, p))(method, kind, payload),
                       INVALID, "decod")
    yield Case("undecodable-GetJob-bad-utf8", lambda ch: _raw(ch, "GetJob", "unary_unary", b"\x0a\x02\xff\xfe"), INVALID, "decod")
    yield Case("undecodable-SubmitJob-first", lambda ch: _raw(ch, "SubmitJob", "stream_unary", iter([b"\xff"])), INVALID, "decod")
    # A valid spec and clip, then garbage: the job must not be submitted with a cut-short upload.
    yield Case("undecodable-SubmitJob-after-chunk", ["RAW", _spec(upload_name="clip.mp4"), "CLIP:three", b"\xff"], INVALID, "decod")
    # JobSpec's video_uri (field 2) sent as a varint: protobuf keeps a field of the wrong wire type as an
    # unknown field, so this is a spec with nothing in it, refused for what it lacks.
    yield Case("protocol-wrong-wire-type", ["RAW", b"\x0a\x02\x10\x01"], INVALID, "exactly one trajectory",
               f"{OPTIONS}.trajectory")


def _oversized_cases():
    big = b"\x00" * (MAX_RECEIVE + 1024)
    yield Case("oversized-chunk", [_spec(upload_name="clip.mp4"), coordinator_pb2.SubmitJobRequest(chunk=big)],
               TOO_LARGE, "larger than max")
    yield Case("oversized-chunk-after-video", [_spec(upload_name="clip.mp4"), "CLIP:three",
                                               coordinator_pb2.SubmitJobRequest(chunk=big)], TOO_LARGE, "larger than max")
    yield Case("oversized-spec", [_spec(trajectory="0 0\n0 0\n1 1\n" + " " * MAX_RECEIVE, upload_name="clip.mp4")],
               TOO_LARGE, "larger than max")
    yield Case("oversized-GetJob", _stub_call("GetJob", coordinator_pb2.GetJobRequest(job_id="x" * MAX_RECEIVE)),
               TOO_LARGE, "larger than max")
    yield Case("oversized-WatchJob", _stub_call("WatchJob", coordinator_pb2.WatchJobRequest(job_id="x" * MAX_RECEIVE)),
               TOO_LARGE, "larger than max")


CASES = list(_cases())


def _materialize(call, clips: dict[str, bytes]):
    """Turn the table's message lists (with "CLIP:<name>"/"RAW" placeholders) into a call."""
    if callable(call):
        return call
    raw = bool(call) and call[0] == "RAW"
    messages = call[1:] if raw else call
    parts = []
    for message in messages:
        if isinstance(message, str) and message.startswith("CLIP:"):
            message = coordinator_pb2.SubmitJobRequest(chunk=clips[message.removeprefix("CLIP:")])
        parts.append(message.SerializeToString() if raw and not isinstance(message, bytes) else message)
    if raw:
        return lambda ch: _raw(ch, "SubmitJob", "stream_unary", iter(parts))
    return _stub_call("SubmitJob", parts)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name) for case in CASES])
def test_a_bad_request_gets_a_clear_status_and_leaves_nothing(coordinator, clips, server_temp, monkeypatch, case):
    root, channel = coordinator
    for variable, value in case.env.items():
        monkeypatch.setenv(variable, value)
    if case.upload_limit is not None:
        monkeypatch.setattr(jobs_manager, "MAX_UPLOAD_BYTES", case.upload_limit)
    before = _files(root)
    with pytest.raises(grpc.RpcError) as caught:
        _materialize(case.call, clips)(channel)
    error = caught.value
    assert (error.code(), case.fragment in (error.details() or "").lower()) == (case.code, True), error.details()
    assert error_details(error).fields == ((case.field,) if case.field else ()), error.details()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert _files(root) == before
    assert _server_temp_left(server_temp) == []
    CLEAN.append(case.name)


def test_the_table_is_large_enough():
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names)
    assert len(CASES) >= 100
    print(f"hostile-input suite: {len(CLEAN)}/{len(CASES)} clean")  # CLEAN fills as the cases above pass


def test_a_dropped_upload_leaves_no_temporary_folder(coordinator, clips, server_temp):
    """The temporary-folder check above can fail: while an upload streams, its folder is there; once the
    client goes away, it is gone."""
    _, channel = coordinator
    sent, hold = threading.Event(), threading.Event()

    def messages():
        yield _spec(upload_name="clip.mp4")
        yield coordinator_pb2.SubmitJobRequest(chunk=clips["three"][:100])
        sent.set()
        hold.wait(TIMEOUT)

    future = coordinator_pb2_grpc.CoordinatorServiceStub(channel).SubmitJob.future(messages(), timeout=TIMEOUT)
    assert sent.wait(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while not any(p.name.startswith("inspatio-upload-") for p in server_temp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [p.name for p in server_temp.iterdir() if p.name.startswith("inspatio-upload-")]
    future.cancel()
    hold.set()
    assert _server_temp_left(server_temp) == []


def test_a_very_large_list_limit_is_capped_not_refused(coordinator):
    _, channel = coordinator
    stub = coordinator_pb2_grpc.CoordinatorServiceStub(channel)
    for limit in (0, 1, jobs_manager.MAX_LIST_LIMIT + 1, 2**31 - 1):
        jobs = stub.ListJobs(coordinator_pb2.ListJobsRequest(limit=limit), timeout=TIMEOUT).jobs
        assert len(jobs) <= min(limit or jobs_manager.DEFAULT_LIST_LIMIT, jobs_manager.MAX_LIST_LIMIT)


def test_a_lenient_deserializer_makes_undecodable_bytes_invalid_argument():
    """What the coordinator needs from rpc/interceptors.py, shown on a plain grpc.server: the handler's
    deserializer from errors.lenient_deserializer, the request checked by decoded/decoded_stream inside
    ErrorMap.translated."""
    errors = ErrorMap()

    def get_job(request, context):
        with errors.translated(context, "GetJob"):
            return coordinator_pb2.Job(job_id=decoded(request).job_id)

    def submit_job(requests, context):
        with errors.translated(context, "SubmitJob"):
            return coordinator_pb2.Job(job_id=str(sum(1 for _ in decoded_stream(requests))))

    codecs = {"response_serializer": coordinator_pb2.Job.SerializeToString}
    handler = grpc.method_handlers_generic_handler("inspatio.world.v1.CoordinatorService", {
        "GetJob": grpc.unary_unary_rpc_method_handler(
            get_job, request_deserializer=lenient_deserializer(coordinator_pb2.GetJobRequest.FromString), **codecs),
        "SubmitJob": grpc.stream_unary_rpc_method_handler(
            submit_job, request_deserializer=lenient_deserializer(coordinator_pb2.SubmitJobRequest.FromString), **codecs),
    })  # fmt: skip
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            good = coordinator_pb2.GetJobRequest(job_id="abc").SerializeToString()
            assert coordinator_pb2.Job.FromString(_raw(channel, "GetJob", "unary_unary", good)).job_id == "abc"
            for call in (lambda: _raw(channel, "GetJob", "unary_unary", b"\xff"),
                         lambda: _raw(channel, "SubmitJob", "stream_unary", iter([good, b"\x0a\x05ab"]))):
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == INVALID, caught.value.details()
                assert "could not be decoded" in caught.value.details()
    finally:
        server.stop(grace=0)
