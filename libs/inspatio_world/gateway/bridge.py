"""One browser connection bridged to one live session.

The session comes from a factory, `open_session(token=..., video=PATH | video_uri=URI, **options)`, that
returns an async context manager yielding an object with `ready`, the coroutines `move(**axes)`,
`cameras(list)`, `pause()`, `resume()`, `reset()`, `close()`, async iteration of blocks and (after
iteration ends) `ended`: the SDK's `AsyncClient.session(...)` (see sessions.py), or a stand-in in tests.

Two tasks per connection: one reads the browser's commands and forwards them; one reads the session's
blocks and sends each as a JSON event followed by its JPEG frames (binary messages, one per frame).
When either ends (the socket closed, the session ended, a fatal error), the other is cancelled and the
session's context is left, which closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .protocol import Command, ProtocolError, Start, UploadDone, decode, encode, parse_command, parse_start

log = logging.getLogger(__name__)

START_TIMEOUT_S = 60.0        # for the first message
CLOSE_TIMEOUT_S = 5.0         # for the session's close when the browser has gone
DEFAULT_FPS = 16.0            # Wan2.1's frame rate: the page plays frames at this pace
DEFAULT_MAX_UPLOAD = 1 << 30  # bytes a browser may upload for one session
SessionFactory = Callable[..., Any]  # (**start) -> async context manager of a session


class CommandClock:
    """Matches a block to the latest browser command it reflects.

    The SDK reports a block's latency as (now - the echoed send time of the latest command it reflects).
    The gateway notes its clock just before forwarding each command; a block received with latency L
    reflects the newest command noted at or before (now - L)."""

    def __init__(self, keep: int = 256) -> None:
        self.sent: list[tuple[int, int]] = []  # (unix ns just before forwarding, browser seq)
        self.keep = keep

    def note(self, seq: int | None) -> None:
        if seq is not None:
            self.sent.append((time.time_ns(), seq))
            del self.sent[:-self.keep]

    def reflected(self, latency_s: float | None) -> int | None:
        if latency_s is None:
            return None
        when = time.time_ns() - int(latency_s * 1e9)
        seqs = [seq for sent, seq in self.sent if sent <= when]
        return seqs[-1] if seqs else None


def block_event(block: Any, command_seq: int | None) -> dict[str, Any]:
    cameras = np.asarray(block.cameras, dtype=np.float64).reshape(-1, 16)
    return {
        "type": "block",
        "generation": int(block.generation),
        "index": int(block.index),
        "first_frame": int(block.first_frame),
        "frames": len(block.jpeg),
        "cameras": cameras.tolist(),
        "source_frames": [int(i) for i in block.source_frames],
        "seconds": float(block.seconds),
        "latency": None if block.latency_s is None else float(block.latency_s),
        "dropped_before": int(getattr(block, "dropped_before", 0) or 0),
        "command_seq": command_seq,
    }


def ready_event(ready: Any, fps: float) -> dict[str, Any]:
    names = ("session_id", "caption", "source_frames", "height", "width", "frames_per_block", "max_blocks")
    event = {"type": "ready", "fps": fps}
    event.update({name: getattr(ready, name, None) for name in names})
    return event


def error_message(exc: BaseException) -> str:
    """A person-readable message for an error from the session (the SDK's RpcError: code and details)."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        with contextlib.suppress(Exception):
            return f"{code().name}: {details()}"
    return str(exc) or type(exc).__name__


class Bridge:
    def __init__(self, ws: ServerConnection, open_session: SessionFactory, fps: float = DEFAULT_FPS,
                 max_upload: int = DEFAULT_MAX_UPLOAD, start_timeout: float = START_TIMEOUT_S) -> None:
        self.ws, self.open_session, self.fps = ws, open_session, fps
        self.max_upload, self.start_timeout = max_upload, start_timeout
        self.clock = CommandClock()
        self.send_lock = asyncio.Lock()  # a block's event and its frames go out together

    async def send(self, event: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send(encode(event))

    async def error(self, message: str, fatal: bool = False) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.send({"type": "error", "message": message, "fatal": fatal})

    async def run(self) -> None:
        try:
            start = await self._read_start()
        except (ProtocolError, TimeoutError, asyncio.TimeoutError) as exc:
            message = str(exc) if isinstance(exc, ProtocolError) else "no start message in time"
            await self.error(message, fatal=True)
            await self.ws.close(1008, "bad start")
            return
        with tempfile.TemporaryDirectory(prefix="inspatio-gateway-") as folder:
            video: dict[str, Any] = {"video_uri": start.video_uri}
            if start.upload_name is not None:
                path = Path(folder) / start.upload_name
                if not await self._receive_upload(path):
                    return
                video = {"video": str(path)}
            await self.send({"type": "opening"})
            await self._bridge(start, video)

    async def _read_start(self) -> Start:
        message = await asyncio.wait_for(self.ws.recv(), self.start_timeout)
        return parse_start(decode(message))

    async def _receive_upload(self, path: Path) -> bool:
        size = 0
        with open(path, "wb") as out:
            async for message in self.ws:
                if isinstance(message, bytes):
                    size += len(message)
                    if size > self.max_upload:
                        await self.error(f"the upload is larger than the gateway's limit of {self.max_upload} bytes", fatal=True)
                        await self.ws.close(1009, "upload too large")
                        return False
                    out.write(message)
                    continue
                try:
                    if isinstance(parse_command(decode(message)), UploadDone):
                        return True
                    raise ProtocolError("only binary chunks and upload_done may follow a start with upload_name")
                except ProtocolError as exc:
                    await self.error(str(exc))
        return False  # the socket closed mid-upload

    async def _bridge(self, start: Start, video: dict[str, Any]) -> None:
        try:
            async with self.open_session(token=start.token, **video, **start.options) as session:
                await self.send(ready_event(session.ready, self.fps))
                tasks = [asyncio.create_task(self._commands(session)), asyncio.create_task(self._blocks(session))]
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                if tasks[1] not in done:
                    # the browser left (or sent close) while blocks were still coming: end the session cleanly
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(session.close(), CLOSE_TIMEOUT_S)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()
        except ConnectionClosed:
            pass  # the browser left: leaving the context closed the session
        except Exception as exc:  # the session's error (refused, unavailable, ...): the browser hears why
            log.info("session ended with an error: %s", error_message(exc))
            await self.error(error_message(exc), fatal=True)
        with contextlib.suppress(ConnectionClosed):
            await self.ws.close()

    async def _commands(self, session: Any) -> None:
        """Browser -> session, until the socket closes (or a close command)."""
        async for message in self.ws:
            try:
                command = parse_command(decode(message))
                if isinstance(command, UploadDone):
                    raise ProtocolError("upload_done without an upload")
            except ProtocolError as exc:
                await self.error(str(exc))
                continue
            await self._forward(session, command)

    async def _forward(self, session: Any, command: Command) -> None:
        self.clock.note(command.seq)
        if command.kind == "move":
            await session.move(**command.args)
        elif command.kind == "cameras":
            await session.cameras(command.args["cameras"])
        else:
            await getattr(session, command.kind)()

    async def _blocks(self, session: Any) -> None:
        """Session -> browser: each block's event, then its frames; then the end."""
        async for block in session:
            event = block_event(block, self.clock.reflected(block.latency_s))
            async with self.send_lock:
                await self.ws.send(encode(event))
                for jpeg in block.jpeg:
                    await self.ws.send(bytes(jpeg))
        ended = getattr(session, "ended", None)
        await self.send({"type": "ended", "reason": getattr(ended, "reason", "ended"), "blocks": getattr(ended, "blocks", None)})
