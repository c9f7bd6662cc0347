"""Live sessions through the real coordinator gRPC server on 127.0.0.1 (issue 14, the relay side).

The coordinator (CoordinatorServicer + SessionServicer, tenants with bearer tokens), its JobManager,
RemoteStages and a LocalStore are the real ones; the stage services behind it are the stand-ins of
tests/support/session_generator.py (a real gRPC server; the generator session is a stand-in until
helper A's RunSession is merged). Sessions are driven through the SDK (sync and async) and raw stubs.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from PIL import Image

from inspatio_world.client import AsyncClient, Client, error_details, write_sample_video
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.remote_stages import RemoteStages
from inspatio_world.jobs.tenants import Tenants
from inspatio_world.rpc.auth import TokenVerifier, token_digest
from inspatio_world.rpc.generated import common_pb2, coordinator_pb2_grpc, session_pb2, session_pb2_grpc
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.store.local import LocalStore
from services.coordinator.servicer import CoordinatorServicer
from services.coordinator.session_servicer import SessionServicer
from tests.support.session_generator import CAPTION, RETRY_AFTER_S, StandInStageServer

BUCKET = "inspatio-sessions"
TIMEOUT = 30
TOKENS = {"acme": "acme-token-0123456789", "bravo": "bravo-token-0123456789"}
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class Stack:
    store: LocalStore
    stages: StandInStageServer
    coordinator: ServiceServer
    manager: JobManager

    @property
    def address(self) -> str:
        return self.coordinator.address

    @property
    def generator(self):
        return self.stages.sessions

    def active(self) -> float:
        return self.coordinator.metrics.registry.get_sample_value("inspatio_sessions_active")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_sample_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 9, 32, 48)


@pytest.fixture
def stack(tmp_path, video) -> Iterator[Stack]:
    store = LocalStore(tmp_path / "store", BUCKET)
    store.put_bytes("datasets/acme/clip.mp4", video.read_bytes(), content_type="video/mp4")
    stages = StandInStageServer.start(store)
    remote = RemoteStages(store, stages.address, stages.address, stages.address, attempts=2, ready_wait_s=5)
    manager = JobManager(store, remote, max_parallel_jobs=1)
    tenants = Tenants.from_document({"tenants": [
        {"name": "acme", "token_sha256": [token_digest(TOKENS["acme"])], "input_prefixes": [f"s3://{BUCKET}/datasets/acme/"]},
        {"name": "bravo", "token_sha256": [token_digest(TOKENS["bravo"])]},
    ]})  # fmt: skip
    sessions = SessionServicer(manager, tenants)
    coordinator = ServiceServer([(coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server, CoordinatorServicer(manager, tenants)),
                                 (session_pb2_grpc.add_SessionServiceServicer_to_server, sessions)],
                                metrics_address=None, grace=0, verifier=TokenVerifier(tenants.token_digests())).start()  # fmt: skip
    sessions.metrics = coordinator.metrics
    coordinator.set_serving()
    try:
        yield Stack(store, stages, coordinator, manager)
    finally:
        coordinator.stop(grace=0)
        stages.stop()
        manager.shutdown(wait=False)
        remote.close()


def client(stack: Stack, tenant: str = "acme") -> Client:
    return Client(stack.address, timeout=TIMEOUT, token=TOKENS[tenant])


def wait_until(condition, timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout} s"
        time.sleep(0.01)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# --- sessions through the sync SDK -----------------------------------------------------------------

def test_a_session_over_an_upload_delivers_blocks_in_order_with_the_cameras_moved(stack, video):
    with client(stack) as sdk, sdk.session(video, seed=3, jpeg_quality=70) as session:
        assert session.ready.caption == CAPTION and session.ready.frames_per_block == 12
        assert {s.stage for s in session.stages} == {"caption", "depth"}
        assert stack.active() == 1
        session.move(forward=1.0)
        blocks = list(session)
    assert session.ended.reason == "max_blocks" and session.ended.blocks == 5
    assert [(b.generation, b.index) for b in blocks] == [(0, i) for i in range(5)]
    assert [b.first_frame for b in blocks] == [0, 9, 21, 33, 45]
    assert [len(b.jpeg) for b in blocks] == [9, 12, 12, 12, 12] == [len(b.cameras) for b in blocks]
    assert Image.open(io.BytesIO(blocks[1].jpeg[0])).size == (24, 16)
    # the move reached the generator: the camera walks forward (w2c translation z decreases)
    z = [b.cameras[-1][2, 3] for b in blocks]
    assert z[-1] < z[0] and all(b.latency_s is not None for b in blocks if b.command_sent_unix_ns)

    setup = stack.generator.sessions[0].setup
    assert setup.video.key.startswith("tenants/acme/uploads/") and stack.store.exists(setup.video.key)
    assert setup.depth.key.startswith("cache/stand-in-depth/") and setup.prompt == CAPTION
    assert (setup.seed, setup.jpeg_quality, setup.autoencoder) == (3, 70, common_pb2.AUTOENCODER_TAEHV)
    assert setup.time_policy == session_pb2.TIME_POLICY_BOUNCE and setup.backpressure == session_pb2.BACKPRESSURE_LATEST
    wait_until(lambda: stack.active() == 0, what="the coordinator's session gauge back to 0")


def test_commands_are_relayed_in_order_and_close_ends_the_session(stack, video):
    stack.generator.max_blocks = 1000
    with client(stack) as sdk, sdk.session(video, prompt="my own prompt", time_policy="freeze", backpressure="wait") as session:
        sent = [float(i) for i in range(40)]
        for value in sent:
            session.move(right=value)
        session.pause()
        session.resume()
        session.reset()
        session.close()
        blocks = list(session)
    assert session.ended.reason == "closed"
    record = stack.generator.sessions[0]
    kinds = [c.WhichOneof("command") for c in record.commands]
    assert kinds == ["move"] * 40 + ["pause", "resume", "reset", "close"]
    assert [c.move.right for c in record.commands[:40]] == sent
    stamps = [c.sent_unix_ns for c in record.commands]
    assert stamps == sorted(stamps) and stamps[0] > 0
    assert [(b.generation, b.index) for b in blocks] == [(b.generation, b.index) for b in record.blocks]
    assert (record.setup.prompt, record.setup.time_policy, record.setup.backpressure) == (
        "my own prompt", session_pb2.TIME_POLICY_FREEZE, session_pb2.BACKPRESSURE_WAIT)
    assert stack.stages.caption.calls == 0  # a prompt replaces the caption: the captioner is never asked


def test_absolute_cameras_are_the_cameras_used(stack, video):
    import numpy as np

    cameras = np.stack([np.eye(4)] * 9)
    cameras[:, 0, 3] = np.arange(9)  # nine cameras stepping along x
    with client(stack) as sdk:
        stack.generator.hold = True  # block 0 waits until the cameras are in
        with sdk.session(video) as session:
            session.cameras(cameras)
            wait_until(lambda: stack.generator.sessions and stack.generator.sessions[0].commands, what="cameras relayed")
            stack.generator.hold_first_block.set()
            first = next(iter(session))
    assert np.array_equal(first.cameras, cameras)


def test_a_video_uri_session_and_the_tenants_limits(stack, video):
    with client(stack) as sdk:
        with sdk.session(video_uri=f"s3://{BUCKET}/datasets/acme/clip.mp4") as session:
            assert session.ready is not None
        assert stack.generator.sessions[0].setup.video.key == "datasets/acme/clip.mp4"
        # the tenant's own earlier upload, by its URI
        with sdk.session(video) as session:
            pass
        own_upload = stack.generator.sessions[1].setup.video.key
        with sdk.session(video_uri=f"s3://{BUCKET}/{own_upload}") as session:
            assert session.ready is not None
        missing = refused(lambda: sdk.session(video_uri=f"s3://{BUCKET}/tenants/acme/uploads/none/clip.mp4").open())
        assert missing.code() == grpc.StatusCode.NOT_FOUND
    with client(stack, "bravo") as sdk:
        # another tenant's upload is outside what bravo may read: refused as SubmitJob refuses it
        other = refused(lambda: sdk.session(video_uri=f"s3://{BUCKET}/{own_upload}").open())
        assert other.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"s3://{BUCKET}/tenants/bravo/uploads/" in other.details()
    assert len(stack.generator.sessions) == 3


def test_without_a_token_a_session_is_unauthenticated(stack, video):
    with Client(stack.address, timeout=TIMEOUT, token="") as sdk:
        error = refused(lambda: sdk.session(video).open())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(stack.address, timeout=TIMEOUT, token="not-a-token") as sdk:
        assert refused(lambda: sdk.session(video).open()).code() == grpc.StatusCode.UNAUTHENTICATED
    assert stack.stages.depth.calls == 0 and not stack.generator.sessions


# --- bad requests: INVALID_ARGUMENT, before any stage runs -----------------------------------------

def _open_raw(stack: Stack, messages, tenant: str = "acme"):
    channel = grpc.insecure_channel(stack.address)
    stub = session_pb2_grpc.SessionServiceStub(channel)
    try:
        return list(stub.OpenSession(iter(messages), timeout=TIMEOUT, metadata=[("authorization", f"Bearer {TOKENS[tenant]}")]))
    finally:
        channel.close()


def test_bad_first_messages_and_bad_videos_are_invalid_argument_before_any_stage(stack, video, tmp_path):
    command = session_pb2.SessionRequest(command=session_pb2.SessionCommand(pause=True))
    error = refused(lambda: _open_raw(stack, [command]))
    assert error.code() == INVALID and "first OpenSession message must be `start`" in error.details()
    no_video = refused(lambda: _open_raw(stack, [session_pb2.SessionRequest(start=session_pb2.SessionStart())]))
    assert no_video.code() == INVALID and error_details(no_video).fields == ("start.video",)
    quality = session_pb2.SessionStart(upload_name="clip.mp4", jpeg_quality=101)
    assert error_details(refused(lambda: _open_raw(stack, [session_pb2.SessionRequest(start=quality)]))).fields == ("start.jpeg_quality",)

    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_bytes(b"this is not a video" * 100)
    with client(stack) as sdk:
        bad = refused(lambda: sdk.session(not_a_video).open())
    assert bad.code() == INVALID and "notes.mp4" in bad.details() and error_details(bad).fields == ("start.upload_name",)
    # an upload that never says upload_done
    start = session_pb2.SessionRequest(start=session_pb2.SessionStart(upload_name="clip.mp4"))
    unfinished = refused(lambda: _open_raw(stack, [start, session_pb2.SessionRequest(chunk=video.read_bytes())]))
    assert unfinished.code() == INVALID and "upload_done" in unfinished.details()
    assert stack.stages.caption.calls == stack.stages.depth.calls == 0 and not stack.generator.sessions
    assert not list((stack.store.root).rglob("*.mp4"))[1:]  # only the dataset clip: nothing half-stored


def test_bad_commands_end_the_session_with_invalid_argument(stack, video):
    with client(stack) as sdk:
        with sdk.session(video) as session:
            session.cameras([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])  # singular
            error = refused(lambda: list(session))
    assert error.code() == INVALID and "not invertible" in error.details()
    assert error_details(error).fields == ("command.cameras.cameras[0].w2c",)
    record = stack.generator.sessions[0]
    assert record.ended.wait(5) and record.end == "cancelled" and not record.commands  # never reached the generator

    start = session_pb2.SessionRequest(start=session_pb2.SessionStart(video_uri=f"s3://{BUCKET}/datasets/acme/clip.mp4"))
    second = refused(lambda: _open_raw(stack, [start, start]))
    assert second.code() == INVALID and "one `start`" in second.details()
    chunk = refused(lambda: _open_raw(stack, [start, session_pb2.SessionRequest(chunk=b"x")]))
    assert chunk.code() == INVALID and error_details(chunk).fields == ("chunk",)


# --- ends: the client leaving, a full generator ----------------------------------------------------

def test_a_client_leaving_closes_the_generator_stream(stack, video):
    stack.generator.max_blocks = 1000
    with client(stack) as sdk:
        with sdk.session(video) as session:
            next(iter(session))
        # leaving the `with` cancelled the call
    record = stack.generator.sessions[0]
    assert record.ended.wait(5), "the generator's stream outlived the client"
    assert record.end == "cancelled"
    wait_until(lambda: stack.active() == 0, what="the session gauge back to 0")


def test_a_full_generator_refuses_with_retry_info_passed_through(stack, video):
    stack.generator.max_blocks = 1000
    with client(stack) as sdk:
        with sdk.session(video) as first:
            next(iter(first))
            error = refused(lambda: sdk.session(video).open())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maximum of 1 sessions" in error.details()
    assert error_details(error).retry_delay_s == RETRY_AFTER_S
    assert stack.stages.depth.calls == 2  # the second session's depth was a cache hit
    assert len(stack.generator.sessions) == 1


# --- the async SDK ---------------------------------------------------------------------------------

def test_the_async_sdk_runs_a_session(stack, video):
    async def run():
        async with AsyncClient(stack.address, timeout=TIMEOUT, token=TOKENS["acme"]) as sdk:
            async with sdk.session(video) as session:
                assert session.ready.caption == CAPTION
                await session.move(yaw=10.0)
                await session.reset()
                blocks = [block async for block in session]
            return session, blocks

    session, blocks = asyncio.run(run())
    assert session.ended.reason == "max_blocks"
    assert [b.index for b in blocks] == [b.index for b in stack.generator.sessions[0].blocks]
    assert [c.WhichOneof("command") for c in stack.generator.sessions[0].commands] == ["move", "reset"]


def test_the_async_sdk_cancel_and_refusal(stack, video):
    stack.generator.max_blocks = 1000

    async def run():
        async with AsyncClient(stack.address, timeout=TIMEOUT, token=TOKENS["acme"]) as sdk:
            async with sdk.session(video) as session:
                async for _ in session:
                    break
                with pytest.raises(grpc.aio.AioRpcError) as full:
                    async with sdk.session(video):
                        pass
            return full.value

    full = asyncio.run(run())
    assert full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_details(full).retry_delay_s == RETRY_AFTER_S
    record = stack.generator.sessions[0]
    assert record.ended.wait(5) and record.end == "cancelled"


# --- the CLI ---------------------------------------------------------------------------------------

def test_the_cli_writes_each_blocks_jpegs(stack, video, tmp_path, capsys, monkeypatch):
    from inspatio_world.cli import main

    stack.generator.max_blocks = 1000
    monkeypatch.setenv("INSPATIO_TOKEN", TOKENS["acme"])
    out = tmp_path / "frames"
    assert main(["session", str(video), "--coordinator", stack.address, "--moves", "forward,yaw+,right", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    lines = [line for line in printed if line.startswith("generation 0 block")]
    # one block per move, then close (a block already under way when the close arrives may follow)
    assert len(lines) >= 3 and lines[0].startswith("generation 0 block 0: 9 frames from frame 0")
    assert printed[-1].startswith("ended: closed after")
    frames = sum(int(line.split(": ")[1].split()[0]) for line in lines)
    written = sorted(out.glob("*.jpg"))
    assert len(written) == frames and written[0].name == "g0_b0000_f000.jpg"
    record = stack.generator.sessions[0]
    assert [c.WhichOneof("command") for c in record.commands] == ["move", "move", "move", "close"]
    assert [c.move.forward for c in record.commands[:3]] == [0.1, 0.0, 0.0] and record.commands[1].move.yaw == 5.0


def test_the_cli_reads_keys_from_stdin(stack, video, tmp_path, capsys, monkeypatch):
    from inspatio_world.cli import main

    stack.generator.max_blocks = 1000
    monkeypatch.setenv("INSPATIO_TOKEN", TOKENS["acme"])
    monkeypatch.setattr("sys.stdin", io.StringIO("forward left\nyaw-\n"))
    assert main(["session", str(video), "--coordinator", stack.address]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("ended: closed")
    commands = stack.generator.sessions[0].commands
    assert [c.WhichOneof("command") for c in commands] == ["move", "move", "move", "close"]
    assert (commands[1].move.right, commands[2].move.yaw) == (-0.1, -5.0)


def test_the_cli_names_a_missing_file_and_an_unknown_key(tmp_path, video):
    from inspatio_world.cli import main

    with pytest.raises(SystemExit, match="none.mp4: no such video file"):
        main(["session", str(tmp_path / "none.mp4"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--moves: unknown key 'sideways'"):
        main(["session", str(video), "--moves", "forward,sideways"])
