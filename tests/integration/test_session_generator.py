"""Live sessions on a generator (sessions/, services/generator/session_servicer.py), tiny weights on CPU.

The offline job it is compared with: the sample clip of 57 frames (= 5 blocks with the Wan VAE), a
per-frame trajectory with one camera per source frame, adaptive frames off."""

from __future__ import annotations

import queue
import threading
import time
from types import SimpleNamespace

import grpc
import numpy as np
import pytest
import torch

from inspatio_world.jobs.local_stages import LocalStages
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import SUCCEEDED
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.runner import BlockPublished
from inspatio_world.media.decode import read_images
from inspatio_world.rpc.generated import common_pb2, session_pb2, session_pb2_grpc
from inspatio_world.rpc.metrics import ServiceMetrics
from inspatio_world.rpc.rich_errors import error_details
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.rpc.session_convert import command_to_proto
from inspatio_world.sessions.cameras import CameraMove
from inspatio_world.sessions.feed import load_scene
from inspatio_world.sessions.jpeg import decode_jpeg
from inspatio_world.sessions.session import (
    Close, GenerationSession, Move, Pause, Reset, Resume, SessionBlock, SessionEnded, SessionSettings, SetCameras,
)
from inspatio_world.store.local import LocalStore

from tests.support.clips import write_sample_mp4
from services.generator.session_servicer import GeneratorSessionServicer
from tests.support.local_jobs import HEIGHT, WIDTH, run_job, weights  # noqa: F401 (fixtures)
from tests.support.session_cameras import job_cameras

FRAMES, BLOCKS, SEED = 57, 5, 7  # 57 frames = 15 latents = 5 blocks of 3


def trajectory_text(w2c: np.ndarray) -> str:
    return "\n".join(" ".join(repr(float(v)) for v in m.reshape(-1)) for m in w2c) + "\n"


@pytest.fixture(scope="module")
def offline(tmp_path_factory, weights):
    """The offline job: its store, manifest, stages and each block's lossless frames."""
    folder = tmp_path_factory.mktemp("offline")
    video = write_sample_mp4(folder, FRAMES, HEIGHT, WIDTH)
    store = LocalStore(folder / "store")
    stages = LocalStages(store, weights, device=torch.device("cpu"))
    manager = JobManager(store, stages, lease_seconds=2.0)
    try:
        options = JobOptions(trajectory_text=trajectory_text(job_cameras()), adaptive_frames=False, seed=SEED, autoencoder="wan_vae")
        manifest, events = run_job(manager, video, options)
    finally:
        manager.shutdown()
    assert manifest.state == SUCCEEDED, manifest.error
    blocks = [read_images(store.download(e.key, folder / f"block{e.index}.mkv")) for e in events if isinstance(e, BlockPublished)]
    assert len(blocks) == BLOCKS
    return store, manifest, stages, blocks


def _session(offline, tmp_path, **settings) -> GenerationSession:
    store, manifest, stages, _ = offline
    scene = load_scene(store, manifest.video.key, manifest.stages["depth"].keys["depth"], tmp_path, torch.device("cpu"))
    settings = {"prompt": manifest.caption, "seed": SEED, "max_blocks": BLOCKS, **settings}
    return GenerationSession(stages.generator, scene, SessionSettings(**settings), start=False)


def _events(session: GenerationSession) -> list:
    events = []
    while not events or not isinstance(events[-1], SessionEnded):
        event = session.next_event(timeout=120)
        assert event is not None, "no event in 120 s"
        events.append(event)
    return events


def test_a_session_given_a_jobs_cameras_makes_the_jobs_frames(offline, tmp_path):
    session = _session(offline, tmp_path)
    session.command(SetCameras(job_cameras()), sent_unix_ns=123)
    session.start()
    events = _events(session)
    blocks = [e for e in events if isinstance(e, SessionBlock)]
    assert events[-1] == SessionEnded("max_blocks", BLOCKS)
    assert [b.index for b in blocks] == list(range(BLOCKS)) and {b.generation for b in blocks} == {0}
    first = 0
    for block, expected in zip(blocks, offline[3], strict=True):
        assert block.first_frame == first and block.images.shape == expected.shape
        assert torch.equal(block.images, expected), f"block {block.index} differs from the job's"
        np.testing.assert_array_equal(block.cameras, job_cameras()[first : first + len(expected)])
        assert block.source_frames == list(range(first, first + len(expected)))
        assert block.command_sent_unix_ns == 123 and block.dropped_before == 0
        assert len(block.jpeg) == len(expected) and decode_jpeg(block.jpeg[0]).shape == tuple(expected.shape[1:])
        first += len(expected)


def test_backpressure_latest_drops_for_a_slow_reader_and_wait_never_drops(offline, tmp_path):
    latest = _session(offline, tmp_path / "latest", max_blocks=3)
    latest.start()
    latest.join(timeout=300)  # nothing read: every block but the last is dropped
    events = _events(latest)
    assert [(e.index, e.dropped_before) for e in events[:-1]] == [(2, 2)] and events[-1] == SessionEnded("max_blocks", 1)

    wait = _session(offline, tmp_path / "wait", max_blocks=3, backpressure="wait")
    wait.start()
    time.sleep(1.0)  # the reader is slow: the generator waits for it
    events = _events(wait)
    assert [(e.index, e.dropped_before) for e in events[:-1]] == [(0, 0), (1, 0), (2, 0)]


def test_an_idle_session_ends(offline, tmp_path):
    session = _session(offline, tmp_path, idle_seconds=0.5)
    session.command(Pause())
    session.start()
    assert _events(session) == [SessionEnded("idle", 0)]


# --- over gRPC ------------------------------------------------------------------------------------------
def _setup(store, manifest, **fields) -> session_pb2.GeneratorSessionRequest:
    setup = session_pb2.GeneratorSessionSetup(
        video=common_pb2.ObjectRef(key=manifest.video.key), depth=common_pb2.ObjectRef(key=manifest.stages["depth"].keys["depth"]),
        prompt=manifest.caption, seed=SEED, **fields,
    )  # fmt: skip
    return session_pb2.GeneratorSessionRequest(setup=setup)


def _command(command, sent: int = 0) -> session_pb2.GeneratorSessionRequest:
    return session_pb2.GeneratorSessionRequest(command=command_to_proto(command, sent))


class _Call:
    """One RunSession call: `send` commands, `next(timeout)` events (read on a thread of their own)."""

    def __init__(self, stub, first) -> None:
        self._out: queue.Queue = queue.Queue()
        self._in: queue.Queue = queue.Queue()
        self._out.put(first)
        self.call = stub.RunSession(iter(self._out.get, None))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self._in.put(event)
            self._in.put("end")
        except grpc.RpcError as error:
            self._in.put(error)

    def send(self, command, sent: int = 0) -> None:
        self._out.put(_command(command, sent))

    def next(self, timeout: float = 120):
        event = self._in.get(timeout=timeout)
        if isinstance(event, grpc.RpcError):
            raise event
        return event

    def done(self) -> None:
        self._out.put(None)


@pytest.fixture
def server(offline):
    store = offline[0]
    made = []

    def start(**limits):
        servicer = GeneratorSessionServicer(store, offline[2].generator, offline[2].identities["generator"], ServiceMetrics(),
                                            **{"max_sessions": 1, "idle_seconds": 60.0, "max_blocks": 6, **limits})  # fmt: skip
        server = ServiceServer([(session_pb2_grpc.add_GeneratorSessionServiceServicer_to_server, servicer)], metrics_address=None)
        server.drain_hooks.append(servicer.drain)
        server.start()
        channel = grpc.insecure_channel(server.address)
        made.append((server, channel))
        return server, session_pb2_grpc.GeneratorSessionServiceStub(channel)

    yield start
    for server, channel in made:
        channel.close()
        server.stop(0)


def _axis_and_centre(w2c) -> tuple[np.ndarray, np.ndarray]:
    c2w = np.linalg.inv(np.array(w2c).reshape(4, 4))
    return c2w[:3, 2], c2w[:3, 3]


def test_moves_reset_pause_and_close_over_grpc(offline, server):
    store, manifest = offline[0], offline[1]
    _, stub = server()
    call = _Call(stub, _setup(store, manifest, backpressure=session_pb2.BACKPRESSURE_WAIT))
    call.send(SetCameras(np.eye(4)[None]), sent=1)
    ready = call.next().ready
    assert ready.session_id and ready.max_blocks == 6 and ready.frames_per_block == 12 and ready.caption == manifest.caption
    blocks = [call.next().block]
    call.send(Move(CameraMove(forward=1.0)), sent=2)
    call.send(Move(CameraMove(yaw=30.0)), sent=3)
    blocks += [call.next().block for _ in range(4)]
    assert [b.index for b in blocks] == [0, 1, 2, 3, 4] and {b.generation for b in blocks} == {0}
    firsts = [b.first_frame for b in blocks]
    assert firsts == sorted(firsts) and firsts[0] == 0 and all(b.first_frame + len(b.jpeg) == n for b, n in zip(blocks, firsts[1:]))
    assert decode_jpeg(blocks[0].jpeg[0]).shape == (ready.height, ready.width, 3)
    cameras = [c.w2c for b in blocks for c in b.cameras]
    centres = np.array([_axis_and_centre(c)[1] for c in cameras])
    axis, centre = _axis_and_centre(cameras[-1])
    np.testing.assert_allclose(centre, [0, 0, 1.0], atol=1e-9)  # moved 1 forward from the identity camera
    np.testing.assert_allclose(axis, [np.sin(np.radians(30)), 0, np.cos(np.radians(30))], atol=1e-9)  # then turned right
    assert (np.diff(centres[:, 2]) >= -1e-12).all()  # only ever forward
    assert blocks[-1].command_sent_unix_ns == 3

    call.send(Reset())
    after = []
    while not after or after[-1].generation == 0:
        after.append(call.next().block)
    assert after[-1].generation == 1 and after[-1].index == 0 and after[-1].first_frame == 0
    call.send(Pause())
    with pytest.raises(queue.Empty):  # paused: at most the block in flight when the pause came
        while True:
            assert call.next(timeout=2.0).block.generation == 1
    call.send(Resume())
    resumed = call.next().block
    assert resumed.generation == 1 and resumed.index > 0
    call.send(Close())
    event = call.next()
    while event.WhichOneof("event") == "block":
        assert event.block.generation == 1
        event = call.next()
    assert event.ended.reason == "closed"
    call.done()
    assert call.next() == "end"


def test_limits_over_grpc(offline, server):
    store, manifest = offline[0], offline[1]
    srv, stub = server(max_blocks=1)
    first = _Call(stub, _setup(store, manifest))
    assert first.next().WhichOneof("event") == "ready"
    second = _Call(stub, _setup(store, manifest))
    with pytest.raises(grpc.RpcError) as refused:
        second.next()
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_details(refused.value).retry_delay_s > 0
    assert first.next().block.index == 0
    assert first.next().ended == session_pb2.SessionEnded(reason="max_blocks", blocks=1)
    first.done()

    deadline = time.monotonic() + 30
    while True:  # the first session's place frees once its stream has ended on the server too
        bad = _Call(stub, _setup(store, manifest))
        try:
            assert bad.next().WhichOneof("event") == "ready"
            break
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
            time.sleep(0.2)
    bad._out.put(session_pb2.GeneratorSessionRequest(command=session_pb2.SessionCommand(
        cameras=session_pb2.Cameras(cameras=[session_pb2.Camera(w2c=[1.0] * 15)]))))
    with pytest.raises(grpc.RpcError) as invalid:
        while True:
            bad.next()
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "16 numbers" in invalid.value.details()


def test_a_draining_server_ends_its_sessions(offline, server):
    store, manifest = offline[0], offline[1]
    srv, stub = server(max_blocks=50)
    call = _Call(stub, _setup(store, manifest))
    assert call.next().WhichOneof("event") == "ready"
    threading.Thread(target=srv.stop, args=(30,), daemon=True).start()
    event = call.next()
    while event.WhichOneof("event") == "block":
        event = call.next()
    assert event.ended.reason == "shutting_down"
    assert call.next() == "end"


def test_a_session_left_right_after_ready_frees_its_place(offline):
    """The call ends while `ready` is being sent (GeneratorExit at that yield), before block 0 started:
    the place is free again (it once stayed taken: joining the never-started worker raised)."""
    store, manifest = offline[0], offline[1]
    metrics = ServiceMetrics()
    servicer = GeneratorSessionServicer(store, offline[2].generator, offline[2].identities["generator"], metrics,
                                        max_sessions=1, idle_seconds=60.0, max_blocks=6, start_grace=60.0)  # fmt: skip
    events = servicer.RunSession(iter([_setup(store, manifest)]), SimpleNamespace(is_active=lambda: True))
    assert next(events).WhichOneof("event") == "ready" and servicer.slots.open == 1
    events.close()
    assert servicer.slots.open == 0 and metrics.registry.get_sample_value("inspatio_sessions_active") == 0


def test_the_generator_service_loads_with_its_session_servicer_on_the_servers_own_metrics(weights, tmp_path, monkeypatch):
    """services/generator/main.py as a deployment runs it: both servicers on one server, one registry
    (a metric declared twice there stops the service at start)."""
    from prometheus_client import generate_latest

    from inspatio_world.rpc.bootstrap import ServiceSettings
    from services.generator import main as generator_main

    monkeypatch.setenv("INSPATIO_WEIGHTS", str(weights.root))
    monkeypatch.setenv("INSPATIO_DEVICE", "cpu")
    server = ServiceServer([])
    servicers = generator_main.load(ServiceSettings.from_env("generator"), LocalStore(tmp_path / "store"), server)
    assert [type(s).__name__ for s in servicers] == ["GeneratorServicer", "GeneratorSessionServicer"]
    scraped = generate_latest(server.metrics.registry).decode()
    for name in ("inspatio_sessions_active", "inspatio_session_block_seconds", "inspatio_session_blocks_dropped_total"):
        assert name in scraped


def test_cameras_sent_after_ready_apply_to_block_0(offline, server):
    """Through the coordinator a client can only send once it has seen `ready`: block 0 waits for the
    first command (or INSPATIO_SESSION_START_GRACE_SECONDS), so those cameras still apply to it."""
    store, manifest = offline[0], offline[1]
    _, stub = server(max_blocks=1, start_grace=30.0)
    call = _Call(stub, _setup(store, manifest))
    assert call.next().WhichOneof("event") == "ready"
    time.sleep(0.5)  # block 0 has not started meanwhile
    call.send(SetCameras(job_cameras()), sent=5)
    block = call.next().block
    assert block.index == 0 and block.command_sent_unix_ns == 5
    np.testing.assert_array_equal([list(c.w2c) for c in block.cameras], job_cameras()[:9].reshape(9, 16))
    call.done()
