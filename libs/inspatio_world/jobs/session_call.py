"""One live session on a generator, as the coordinator holds it: commands in, events out.

`open_session(setup)` of a stage client (jobs/remote_stages.py) returns a `SessionCall`: `send(command)`
passes a client's SessionCommand on as it arrives, iterating gives the generator's SessionEvent
messages in order (a failed stream raises its grpc.RpcError, status and trailers as the generator
sent them), `done_sending()` half-closes the stream (the client sent its last command), `cancel()`
ends it (the client went away). The first event was already read when the call was opened, so that
a refusal to open (RESOURCE_EXHAUSTED: the replica is full) surfaces at `open_session`.
"""

from __future__ import annotations

import queue
from typing import Iterator

from ..rpc.generated import session_pb2

_END = object()


class CommandFeed:
    """The request side of one RunSession attempt: `setup` first, then each command put, until `end()`.
    Each attempt has its own feed, so a stream given up on can never take a later attempt's command."""

    def __init__(self, setup: session_pb2.GeneratorSessionSetup) -> None:
        self._setup = setup
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def __iter__(self) -> Iterator[session_pb2.GeneratorSessionRequest]:
        yield session_pb2.GeneratorSessionRequest(setup=self._setup)
        while (command := self._queue.get()) is not _END:
            yield session_pb2.GeneratorSessionRequest(command=command)

    def put(self, command: session_pb2.SessionCommand) -> None:
        self._queue.put(command)

    def end(self) -> None:
        self._queue.put(_END)  # also frees the gRPC thread waiting for the next request


class SessionCall:
    """An open RunSession stream (see the module docstring)."""

    def __init__(self, stream, feed: CommandFeed, first: session_pb2.SessionEvent | None) -> None:
        self._stream, self._feed, self._first = stream, feed, first
        self._done_sending = False

    def send(self, command: session_pb2.SessionCommand) -> None:
        if self._done_sending:
            raise RuntimeError("the session's command stream is already closed")
        self._feed.put(command)

    def done_sending(self) -> None:
        if not self._done_sending:
            self._done_sending = True
            self._feed.end()

    def cancel(self) -> None:
        self._stream.cancel()
        self.done_sending()

    def __iter__(self) -> Iterator[session_pb2.SessionEvent]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._stream
