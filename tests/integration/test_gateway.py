"""The viewer gateway's WebSocket protocol, against a stand-in for the SDK's async session (a real
gateway on 127.0.0.1, a real WebSocket client): commands forwarded, events and frames in order, the token
passed on, bad messages answered with error events, the session closed when the socket closes."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest

pytest.importorskip("websockets")

from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

from inspatio_world.gateway import GatewaySettingsError, check_bind, viewer_url  # noqa: E402
from inspatio_world.gateway.server import Gateway  # noqa: E402
from tests.support.standin_session import StandInSessions  # noqa: E402

START = {"type": "start", "token": "secret-token-1", "video_uri": "s3://inputs/clip.mp4", "prompt": "a room",
         "seed": 3, "autoencoder": "taehv", "backpressure": "latest", "jpeg_quality": 80}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def next_json(ws) -> dict:
    """The next text message (a JSON event), skipping binary frames."""
    while True:
        message = await ws.recv()
        if isinstance(message, str):
            return json.loads(message)


async def next_of(ws, kind: str) -> dict:
    while True:
        event = await next_json(ws)
        if event["type"] == kind:
            return event


async def with_gateway(sessions: StandInSessions, body):
    async with Gateway(sessions) as gateway:
        await gateway.start("127.0.0.1", 0)
        async with connect(f"ws://127.0.0.1:{gateway.port}/ws") as ws:
            return await body(ws, gateway)


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_start_ready_and_blocks_with_their_frames_in_order():
    sessions = StandInSessions(session_options=dict(frames_per_block=3, max_blocks=4, block_seconds=0.01))

    async def body(ws, gateway):
        await ws.send(json.dumps(START))
        assert (await next_json(ws))["type"] == "opening"
        ready = await next_json(ws)
        assert ready["type"] == "ready" and ready["session_id"] == "standin-1" and ready["frames_per_block"] == 3
        assert ready["fps"] > 0
        seen = []
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "ended":
                break
            assert event["type"] == "block"
            assert len(event["cameras"]) == event["frames"] == 3 and all(len(c) == 16 for c in event["cameras"])
            frames = [await ws.recv() for _ in range(event["frames"])]
            assert all(isinstance(f, bytes) and f[:2] == b"\xff\xd8" for f in frames)  # JPEGs
            seen.append((event["generation"], event["index"], event["first_frame"]))
        assert seen == [(0, i, 3 * i) for i in range(4)]
        assert event == {"type": "ended", "reason": "max_blocks", "blocks": 4}
        await asyncio.wait_for(ws.wait_closed(), 5)

    run(with_gateway(sessions, body))
    # the token and the options went to the session factory as the SDK's keyword arguments
    assert sessions.calls == [dict(token="secret-token-1", video_uri="s3://inputs/clip.mp4", prompt="a room", seed=3,
                                   autoencoder="taehv", backpressure="latest", jpeg_quality=80)]
    assert sessions.sessions[0].exited


def test_commands_are_forwarded_and_blocks_name_the_command_they_reflect():
    sessions = StandInSessions(session_options=dict(block_seconds=0.02))

    async def body(ws, gateway):
        await ws.send(json.dumps(START))
        await next_of(ws, "ready")
        session = sessions.sessions[0]
        await ws.send(json.dumps({"type": "move", "forward": 0.5, "yaw": 10, "seq": 1}))
        await ws.send(json.dumps({"type": "cameras", "cameras": [[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, -2, 0, 0, 0, 1]], "seq": 2}))
        await ws.send(json.dumps({"type": "pause", "seq": 3}))
        await until(lambda: len(session.commands) == 3)
        await ws.send(json.dumps({"type": "resume", "seq": 4}))
        await ws.send(json.dumps({"type": "reset", "seq": 5}))
        await until(lambda: len(session.commands) == 5)
        event = await next_of(ws, "block")
        while event["generation"] != 1:
            event = await next_of(ws, "block")
        assert event["command_seq"] == 5 and event["latency"] > 0
        assert [kind for kind, _ in session.commands] == ["move", "cameras", "pause", "resume", "reset"]
        assert session.commands[0][1] == dict(forward=0.5, right=0.0, up=0.0, yaw=10.0, pitch=0.0, orbit=0.0)
        await ws.send(json.dumps({"type": "close", "seq": 6}))
        assert (await next_of(ws, "ended"))["reason"] == "closed"
        await asyncio.wait_for(ws.wait_closed(), 5)

    run(with_gateway(sessions, body))
    assert sessions.sessions[0].closed and sessions.sessions[0].exited


def test_a_bad_message_is_answered_with_an_error_event_and_the_session_goes_on():
    sessions = StandInSessions(session_options=dict(block_seconds=0.02))

    async def body(ws, gateway):
        await ws.send(json.dumps(START))
        await next_of(ws, "ready")
        for bad, words in [("not json", "not JSON"), (json.dumps({"type": "fly"}), "unknown message type"),
                           (json.dumps({"type": "move", "forward": "fast"}), "forward"),
                           (json.dumps({"type": "move", "warp": 9}), "warp"),
                           (json.dumps({"type": "cameras", "cameras": [[1, 2, 3]]}), "16 numbers"),
                           (json.dumps(START), "one start"), (b"\x00\x01", "binary")]:
            await ws.send(bad)
            error = await next_of(ws, "error")
            assert words in error["message"] and error["fatal"] is False, (bad, error)
        await ws.send(json.dumps({"type": "move", "right": 1}))
        await until(lambda: sessions.sessions[0].commands == [("move", dict(forward=0.0, right=1.0, up=0.0, yaw=0.0, pitch=0.0, orbit=0.0))])
        assert (await next_of(ws, "block"))["type"] == "block"  # still streaming

    run(with_gateway(sessions, body))


def test_a_bad_start_is_a_fatal_error_and_no_session_opens():
    sessions = StandInSessions()

    async def body(ws, gateway):
        await ws.send(json.dumps({"type": "move", "forward": 1}))
        error = await next_json(ws)
        assert error["type"] == "error" and error["fatal"] and "first message" in error["message"]
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1008

    run(with_gateway(sessions, body))
    for start, words in [({"type": "start"}, "exactly one of video_uri and upload_name"),
                         ({**START, "backpressure": "drop"}, "backpressure"), ({**START, "jpeg_quality": 0}, "jpeg_quality"),
                         ({**START, "colour": "red"}, "unknown field")]:
        async def bad_start(ws, gateway, start=start):
            await ws.send(json.dumps(start))
            return await next_json(ws)

        error = run(with_gateway(sessions, bad_start))
        assert error["type"] == "error" and words in error["message"], (start, error)
    assert sessions.calls == []


def test_closing_the_socket_closes_the_session():
    sessions = StandInSessions(session_options=dict(block_seconds=0.02))

    async def body():
        async with Gateway(sessions) as gateway:
            await gateway.start("127.0.0.1", 0)
            async with connect(f"ws://127.0.0.1:{gateway.port}/ws") as ws:
                await ws.send(json.dumps(START))
                await next_of(ws, "block")
            await until(lambda: sessions.sessions[0].exited)

    run(body())
    session = sessions.sessions[0]
    assert session.closed and session.exited and session.commands[-1][0] == "close"


def test_a_refused_session_is_a_fatal_error_event():
    class Refusal(Exception):
        def code(self):
            return type("Code", (), {"name": "RESOURCE_EXHAUSTED"})()

        def details(self):
            return "the generator runs 1 session at a time; retry in 5 s"

    sessions = StandInSessions(refuse=Refusal())

    async def body(ws, gateway):
        await ws.send(json.dumps(START))
        await next_of(ws, "opening")
        error = await next_json(ws)
        assert error == {"type": "error", "fatal": True,
                         "message": "RESOURCE_EXHAUSTED: the generator runs 1 session at a time; retry in 5 s"}
        await asyncio.wait_for(ws.wait_closed(), 5)

    run(with_gateway(sessions, body))


def test_an_upload_reaches_the_session_as_a_file():
    received = {}

    class Uploads(StandInSessions):
        def __call__(self, **start):
            with open(start["video"], "rb") as f:
                received["bytes"] = f.read()
            return super().__call__(**start)

    sessions = Uploads(session_options=dict(max_blocks=1, block_seconds=0.01))

    async def body(ws, gateway):
        start = {k: v for k, v in START.items() if k != "video_uri"}
        await ws.send(json.dumps({**start, "upload_name": "clip.mp4"}))
        await ws.send(b"abc")
        await ws.send(b"def")
        await ws.send(json.dumps({"type": "upload_done"}))
        await next_of(ws, "ended")

    run(with_gateway(sessions, body))
    assert received["bytes"] == b"abcdef"
    assert sessions.calls[0]["video"].endswith("/clip.mp4") and "video_uri" not in sessions.calls[0]


def test_the_page_is_served_and_other_origins_are_refused():
    async def body():
        async with Gateway(StandInSessions()) as gateway:
            await gateway.start("127.0.0.1", 0)
            base = f"http://127.0.0.1:{gateway.port}"
            loop = asyncio.get_running_loop()

            def get(path):
                with urllib.request.urlopen(base + path, timeout=5) as response:
                    return response.status, response.headers["Content-Type"], response.read()

            status, kind, html = await loop.run_in_executor(None, get, "/")
            assert status == 200 and kind.startswith("text/html") and b"viewer.js" in html
            status, kind, js = await loop.run_in_executor(None, get, "/viewer.js")
            assert status == 200 and kind.startswith("text/javascript") and b"WebSocket" in js
            with pytest.raises(urllib.error.HTTPError) as missing:
                await loop.run_in_executor(None, get, "/etc/passwd")
            assert missing.value.code == 404
            missing.value.close()  # else the server waits for this connection when it stops
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{gateway.port}/ws", origin="http://evil.example"):
                    pass
            assert refused.value.response.status_code == 403
            async with connect(f"ws://127.0.0.1:{gateway.port}/ws", origin=f"http://127.0.0.1:{gateway.port}") as ws:
                await ws.send("{}")
                assert (await next_json(ws))["type"] == "error"

    run(body())


def test_plaintext_only_on_loopback_unless_allowed():
    check_bind("127.0.0.1", tls=False, allow_plaintext=False)
    check_bind("localhost", tls=False, allow_plaintext=False)
    check_bind("::1", tls=False, allow_plaintext=False)
    with pytest.raises(GatewaySettingsError, match="--allow-plaintext"):
        check_bind("0.0.0.0", tls=False, allow_plaintext=False)
    check_bind("0.0.0.0", tls=True, allow_plaintext=False)
    check_bind("0.0.0.0", tls=False, allow_plaintext=True)


def test_viewer_url_keeps_the_token_in_the_fragment():
    assert viewer_url("127.0.0.1:8080", "s3://inputs/a b.mp4") == "http://127.0.0.1:8080/?video_uri=s3%3A%2F%2Finputs%2Fa+b.mp4"
    url = viewer_url("https://viewer.example/", "s3://x/y.mp4", token="t/o+k=")
    assert url == "https://viewer.example/?video_uri=s3%3A%2F%2Fx%2Fy.mp4#token=t%2Fo%2Bk%3D"


def test_the_gateway_command_serves_the_page_and_refuses_plaintext_off_loopback(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    env = {k: v for k, v in os.environ.items() if k != "INSPATIO_ALLOW_PLAINTEXT"}
    command = [sys.executable, "-m", "inspatio_world.cli", "gateway", "--coordinator", "127.0.0.1:1"]
    refused = subprocess.run([*command, "--listen", "0.0.0.0:8080"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "not a loopback address" in refused.stderr and "--allow-plaintext" in refused.stderr

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([*command, "--listen", f"127.0.0.1:{port}"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200 and b"viewer.js" in response.read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the gateway did not come up"
                time.sleep(0.1)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert server.returncode == 0, stderr  # SIGTERM: a clean stop
    assert f"viewer at http://127.0.0.1:{port}/" in stderr


def test_the_gateway_never_lends_its_own_token(monkeypatch):
    from inspatio_world.gateway.sessions import coordinator_sessions

    monkeypatch.setenv("INSPATIO_TOKEN", "the-gateway-operators-token")

    async def body(ws, gateway):
        await ws.send(json.dumps({k: v for k, v in START.items() if k != "token"}))
        await next_of(ws, "opening")
        error = await next_json(ws)
        assert error["type"] == "error" and error["fatal"] and "needs the browser's token" in error["message"]
        assert "the-gateway-operators-token" not in json.dumps(error)

    run(with_gateway(coordinator_sessions("127.0.0.1:1"), body))
