"""Live sessions through the real coordinator (issue 14, the relay side), over the real stack: the four
services as processes on 127.0.0.1 with tiny weights (tests/support/session_stack.py), tenants with
bearer tokens, a generator replica holding one session at a time (INSPATIO_MAX_SESSIONS=1) of at most
5 blocks, block 0 waiting up to 10 s for a session's first command (the stack is shared with
test_session_stack: SHARED_GENERATOR_ENV). Sessions are driven through the SDK (sync and async), raw stubs and the CLI; what the
generator did is read from what it sends (the cameras it used, its ends and refusals) and from the
services' metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re

import grpc
import numpy as np
import pytest
from PIL import Image

from inspatio_world.client import AsyncClient, Client, error_details
from inspatio_world.rpc.generated import session_pb2, session_pb2_grpc
from inspatio_world.store.keys import upload_key

from tests.support.session_stack import BUCKET, DATASET_KEY, wait_for_no_session, wait_until
from tests.support.session_stack import sessions_active as active

TIMEOUT = 120
INVALID = grpc.StatusCode.INVALID_ARGUMENT
RETRY_AFTER_S = 5.0  # services/generator/session_servicer.py RETRY_AFTER_S
FULL = "INSPATIO_MAX_SESSIONS"


@pytest.fixture(scope="module")
def stack(live_stack):
    return live_stack  # shared with test_session_stack (tests/integration/conftest.py)


@pytest.fixture(scope="module")
def video(stack):
    return stack.video


@pytest.fixture(autouse=True)
def no_session_left(stack):
    """Each test starts and ends with no session open: the generator holds one at a time."""
    wait_for_no_session(stack)
    yield
    wait_for_no_session(stack, what="every session ended")


def free(stack) -> None:
    """Wait for the generator's one place: a session left by cancelling (leaving its `with`) frees it
    a moment later, when the generator has seen the cancel."""
    wait_until(lambda: active(stack, "generator") == 0, what="the generator's place free")


def client(stack, tenant: str = "acme") -> Client:
    return Client(stack.address, timeout=TIMEOUT, token=stack.tokens[tenant])


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def uploads(stack) -> set[str]:
    return {str(p.relative_to(stack.store.root / BUCKET)) for p in (stack.store.root / BUCKET).rglob("*.mp4")}


def centres(cameras) -> np.ndarray:
    return np.array([np.linalg.inv(np.asarray(c).reshape(4, 4))[:3, 3] for c in cameras])


# --- sessions through the sync SDK -----------------------------------------------------------------

def test_a_session_over_an_upload_delivers_blocks_in_order_with_the_cameras_moved(stack, video):
    # uploads are kept under their content hash: another test (the stack is shared) may have stored this clip
    upload = upload_key(hashlib.sha256(video.read_bytes()).hexdigest(), video.name, "acme")
    stack.store.delete(upload)
    with client(stack) as sdk, sdk.session(video, seed=3, jpeg_quality=70) as session:
        assert session.ready.caption and session.ready.frames_per_block == 12  # the real (tiny) Florence-2's caption
        assert {s.stage for s in session.stages} == {"caption", "depth"}
        assert active(stack, "coordinator") == 1 == active(stack, "generator")
        session.move(forward=1.0)
        blocks = list(session)
    assert session.ended.reason == "max_blocks" and session.ended.blocks == 5
    assert [(b.generation, b.index) for b in blocks] == [(0, i) for i in range(5)]
    assert [b.first_frame for b in blocks] == [0, 9, 21, 33, 45]
    assert [len(b.jpeg) for b in blocks] == [9, 12, 12, 12, 12] == [len(b.cameras) for b in blocks]
    assert Image.open(io.BytesIO(blocks[1].jpeg[0])).size == (session.ready.width, session.ready.height)
    # the move reached the generator: the camera walks 1.0 forward, over the 12 frames after the move
    walked = centres(np.concatenate([b.cameras for b in blocks]))
    assert np.linalg.norm(walked[11] - walked[0]) == pytest.approx(11 / 12, abs=1e-6)
    assert all(b.latency_s is not None for b in blocks if b.command_sent_unix_ns)
    # the upload is kept under the tenant's uploads, as SubmitJob keeps one
    assert stack.store.exists(upload)


def test_commands_are_relayed_in_order_and_close_ends_the_session(stack, video):
    with client(stack) as sdk, sdk.session(video, prompt="my own prompt", time_policy="freeze", backpressure="wait") as session:
        assert session.ready.caption == "my own prompt" and {s.stage for s in session.stages} == {"depth"}  # no caption asked
        sent = [0.1 * i for i in range(1, 5)]
        for value in sent:  # moves are appended in the order they arrive: 12 frames each
            session.move(right=value)
        session.pause()
        session.resume()
        blocks = []
        for block in session:
            blocks.append(block)
            if block.index == 3:
                session.close()
    assert session.ended.reason == "closed"
    walked = centres(np.concatenate([b.cameras for b in blocks]))
    # frames 12k..12k+11 strafe sent[k] / 12 a frame: the moves' order is the cameras' order
    strides = [np.linalg.norm(walked[12 * k + 11] - walked[12 * k]) * 12 / 11 for k in range(len(walked) // 12)]
    assert strides == pytest.approx(sent[: len(strides)], abs=1e-6) and len(strides) >= 3
    # freeze: time stops at the last source frame reached (57 frames are enough here: it runs forward)
    assert [b.source_frames[0] for b in blocks] == [b.first_frame for b in blocks]


def test_absolute_cameras_are_the_cameras_used(stack, video):
    cameras = np.stack([np.eye(4)] * 9)
    cameras[:, 0, 3] = np.arange(9) * 0.01  # nine cameras stepping along x
    with client(stack) as sdk, sdk.session(video) as session:
        session.cameras(cameras)  # right after ready: block 0 waits for the first command
        first = next(iter(session))
    assert first.index == 0 and np.array_equal(first.cameras, cameras)


def test_a_video_uri_session_and_the_tenants_limits(stack, video):
    with client(stack) as sdk:
        with sdk.session(video_uri=f"s3://{BUCKET}/{DATASET_KEY}") as session:
            assert session.ready.source_frames == 57
        free(stack)
        with sdk.session(video) as session:  # the tenant's own upload, then by its URI
            assert session.ready is not None
        own_upload = sorted(key for key in uploads(stack) if key.startswith("tenants/acme/uploads/"))[0]
        free(stack)
        with sdk.session(video_uri=f"s3://{BUCKET}/{own_upload}") as session:
            assert session.ready is not None and all(s.cache_hit for s in session.stages)  # same video: cached stages
        missing = refused(lambda: sdk.session(video_uri=f"s3://{BUCKET}/tenants/acme/uploads/none/clip.mp4").open())
        assert missing.code() == grpc.StatusCode.NOT_FOUND
    with client(stack, "bravo") as sdk:
        # another tenant's upload is outside what bravo may read: refused as SubmitJob refuses it
        other = refused(lambda: sdk.session(video_uri=f"s3://{BUCKET}/{own_upload}").open())
        assert other.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"s3://{BUCKET}/tenants/bravo/uploads/" in other.details()


def test_without_a_token_a_session_is_unauthenticated(stack, video, monkeypatch):
    monkeypatch.delenv("INSPATIO_TOKEN", raising=False)
    monkeypatch.delenv("INSPATIO_TOKEN_FILE", raising=False)
    before = uploads(stack)
    with Client(stack.address, timeout=TIMEOUT, token="") as sdk:
        error = refused(lambda: sdk.session(video).open())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    with Client(stack.address, timeout=TIMEOUT, token="not-a-token") as sdk:
        assert refused(lambda: sdk.session(video).open()).code() == grpc.StatusCode.UNAUTHENTICATED
    assert uploads(stack) == before  # nothing stored


# --- bad requests: INVALID_ARGUMENT, before any stage runs -----------------------------------------

def _open_raw(stack, messages, tenant: str = "acme"):
    channel = grpc.insecure_channel(stack.address)
    stub = session_pb2_grpc.SessionServiceStub(channel)
    try:
        return list(stub.OpenSession(iter(messages), timeout=TIMEOUT, metadata=[("authorization", f"Bearer {stack.tokens[tenant]}")]))
    finally:
        channel.close()


def test_bad_first_messages_and_bad_videos_are_invalid_argument_before_any_stage(stack, video, tmp_path):
    before = uploads(stack)
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
    assert uploads(stack) == before  # nothing half-stored


def test_bad_commands_end_the_session_with_invalid_argument(stack, video):
    with client(stack) as sdk:
        with sdk.session(video) as session:
            session.cameras([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])  # singular
            error = refused(lambda: list(session))
    assert error.code() == INVALID and "not invertible" in error.details()
    assert error_details(error).fields == ("command.cameras.cameras[0].w2c",)
    free(stack)  # the generator's stream was cancelled: its place frees

    start = session_pb2.SessionRequest(start=session_pb2.SessionStart(video_uri=f"s3://{BUCKET}/{DATASET_KEY}"))
    second = refused(lambda: _open_raw(stack, [start, start]))
    assert second.code() == INVALID and "one `start`" in second.details()
    free(stack)
    chunk = refused(lambda: _open_raw(stack, [start, session_pb2.SessionRequest(chunk=b"x")]))
    assert chunk.code() == INVALID and error_details(chunk).fields == ("chunk",)


# --- ends: the client leaving, a full generator ----------------------------------------------------

def test_a_client_leaving_closes_the_generator_stream(stack, video):
    with client(stack) as sdk:
        with sdk.session(video) as session:
            session.move(forward=0.1)  # block 0 starts now, not after the start grace
            next(iter(session))
            assert active(stack, "generator") == 1
        # leaving the `with` cancelled the call: the generator's session ends too
    wait_until(lambda: active(stack, "generator") == 0, what="the generator's session gauge back to 0")
    wait_until(lambda: active(stack, "coordinator") == 0, what="the coordinator's session gauge back to 0")


def test_a_full_generator_refuses_with_retry_info_passed_through(stack, video):
    with client(stack) as sdk:
        with sdk.session(video) as first:
            first.pause()  # held open: block 0 never starts
            error = refused(lambda: sdk.session(video).open())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert FULL in error.details()
    assert error_details(error).retry_delay_s == RETRY_AFTER_S


# --- the async SDK ---------------------------------------------------------------------------------

def test_the_async_sdk_runs_a_session(stack, video):
    async def run():
        async with AsyncClient(stack.address, timeout=TIMEOUT, token=stack.tokens["acme"]) as sdk:
            async with sdk.session(video, backpressure="wait") as session:
                assert session.ready.caption
                await session.move(yaw=10.0)
                await session.reset()
                blocks = [block async for block in session]
            return session, blocks

    session, blocks = asyncio.run(run())
    assert session.ended.reason == "max_blocks"
    # the reset came before block 0 of generation 0 was delivered: only generation 1's blocks arrive
    assert blocks and blocks[-1].generation == 1 and [b.index for b in blocks if b.generation == 1] == list(range(5))
    assert all(np.allclose(b.cameras, b.cameras[0]) or b.generation == 1 for b in blocks)


def test_the_async_sdk_cancel_and_refusal(stack, video):
    async def run():
        async with AsyncClient(stack.address, timeout=TIMEOUT, token=stack.tokens["acme"]) as sdk:
            async with sdk.session(video) as session:
                await session.pause()
                with pytest.raises(grpc.aio.AioRpcError) as full:
                    async with sdk.session(video):
                        pass
            return full.value

    full = asyncio.run(run())
    assert full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_details(full).retry_delay_s == RETRY_AFTER_S
    wait_until(lambda: active(stack, "generator") == 0, what="the cancelled session's place freed")


# --- the CLI ---------------------------------------------------------------------------------------

def test_the_cli_writes_each_blocks_jpegs(stack, video, tmp_path, capsys, monkeypatch):
    from inspatio_world.cli import main

    monkeypatch.setenv("INSPATIO_TOKEN", stack.tokens["acme"])
    out = tmp_path / "frames"
    assert main(["session", str(video), "--coordinator", stack.address, "--moves", "forward,yaw+,right", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    lines = [line for line in printed if line.startswith("generation 0 block")]
    # one block per move, then close (a block already under way when the close arrives may follow)
    assert len(lines) >= 3 and lines[0].startswith("generation 0 block 0: 9 frames from frame 0")
    assert printed[-1].startswith("ended: ") and ("closed" in printed[-1] or "max_blocks" in printed[-1])
    frames = sum(int(line.split(": ")[1].split()[0]) for line in lines)
    written = sorted(out.glob("*.jpg"))
    assert len(written) == frames and written[0].name == "g0_b0000_f000.jpg"


def test_the_cli_reads_keys_from_stdin(stack, video, tmp_path, capsys, monkeypatch):
    from inspatio_world.cli import main

    monkeypatch.setenv("INSPATIO_TOKEN", stack.tokens["acme"])
    monkeypatch.setattr("sys.stdin", io.StringIO("forward left\nyaw-\n"))
    assert main(["session", str(video), "--coordinator", stack.address]) == 0
    assert re.match(r"ended: (closed|max_blocks)", capsys.readouterr().out.splitlines()[-1])


def test_the_cli_names_a_missing_file_and_an_unknown_key(tmp_path, video):
    from inspatio_world.cli import main

    with pytest.raises(SystemExit, match="none.mp4: no such video file"):
        main(["session", str(tmp_path / "none.mp4"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--moves: unknown key 'sideways'"):
        main(["session", str(video), "--moves", "forward,sideways"])
