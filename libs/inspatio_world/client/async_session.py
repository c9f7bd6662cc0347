"""The asyncio twin of `session.Session` (grpc.aio): `AsyncClient.session(...)`.

    async with AsyncClient("127.0.0.1:50051") as client:
        async with client.session("clip.mp4") as session:
            await session.move(forward=0.2)
            async for block in session:
                ...

The same messages, events and errors as the sync session (client/session.py); commands are awaited
(one write at a time, in the order awaited), and may be sent from any task while another iterates.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Callable, Iterator

import grpc

from ..rpc.generated import session_pb2, session_pb2_grpc
from .session import SessionBlock, SessionCommands, SessionEnded, SessionInfo, StageTime, _Opened, flag_command, opening_event


class AsyncSession(SessionCommands):
    def __init__(self, channel: grpc.aio.Channel, opening: Callable[[], Iterator[session_pb2.SessionRequest]],
                 timeout: float | None = None, attempts: int = 6, backoff: float = 0.5) -> None:  # fmt: skip
        self._stub = session_pb2_grpc.SessionServiceStub(channel)
        self._opening, self._timeout, self._attempts, self._backoff = opening, timeout, attempts, backoff
        self._call: grpc.aio.StreamStreamCall | None = None
        self._write_lock = asyncio.Lock()
        self._closed = False
        self.ready: SessionInfo | None = None
        self.ended: SessionEnded | None = None
        self.stages: list[StageTime] = []

    async def __aenter__(self) -> "AsyncSession":
        return await self.open()

    async def __aexit__(self, *exc) -> None:
        self.cancel()

    async def open(self) -> "AsyncSession":
        """As `Session.open`: until the generator is ready; retried while the coordinator is UNAVAILABLE."""
        for attempt in range(self._attempts):
            self._call = self._stub.OpenSession(timeout=self._timeout)
            opened = _Opened()
            try:
                await self._write_opening()
                while not opening_event(await self._read(), opened):
                    pass
            except EOFError:
                raise RuntimeError("the session's stream ended before the generator was ready") from None
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == self._attempts - 1:
                    raise
                await asyncio.sleep(self._backoff * 2**attempt)
                continue
            self.stages, self.ready, self.ended = opened.stages, opened.ready, opened.ended
            return self
        raise AssertionError("unreachable")

    async def _write_opening(self) -> None:
        try:
            for request in self._opening():
                await self._call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the server ended the call early (a refusal): reading gives its status

    async def _read(self) -> session_pb2.SessionEvent:
        event = await self._call.read()  # raises the call's AioRpcError when it ends with an error
        if event is grpc.aio.EOF:
            raise EOFError("the session's stream ended")
        return event

    async def _send(self, request: session_pb2.SessionRequest) -> int:
        if self._call is None:
            raise RuntimeError("the session is not open yet: use it inside `async with client.session(...)`")
        if self._closed:
            raise RuntimeError("the session was closed: no more commands")
        async with self._write_lock:
            await self._call.write(request)
        return request.command.sent_unix_ns

    async def close(self) -> None:
        """Ask the generator to end the session; the iteration then ends (`ended.reason` "closed")."""
        await self._send(flag_command("close"))
        self._closed = True
        async with self._write_lock:
            await self._call.done_writing()

    def cancel(self) -> None:
        """Leave at once (the generator's stream is cancelled); nothing if the session has ended."""
        if self._call is not None and self.ended is None:
            self._call.cancel()

    async def __aiter__(self) -> AsyncIterator[SessionBlock]:
        if self._call is None:
            raise RuntimeError("the session is not open yet: use it inside `async with client.session(...)`")
        while self.ended is None:
            try:
                event = await self._read()
            except EOFError:
                return
            kind = event.WhichOneof("event")
            if kind == "block":
                yield SessionBlock.from_proto(event.block, time.time_ns())
            elif kind == "ended":
                self.ended = SessionEnded(event.ended.reason, event.ended.blocks)
