"""GeneratorSessionService.RunSession over `sessions.session.GenerationSession`: a thin adapter.

The first message is the setup (video and depth as references into this deployment's bucket, as
Generate's); commands follow. Commands are read on a thread of their own and applied as they come.

When block 0 starts: after `ready`, the session waits for the client's first command, or at most
INSPATIO_SESSION_START_GRACE_SECONDS (default 1), before block 0 starts. The proto's setup carries no
cameras, and a client through the coordinator can only send commands once it has seen `ready` (the
coordinator relays commands only once the generator's stream is open and its first event read), so
without this wait block 0 would start with whatever happened to have arrived: the cameras sent right
after `ready` (all of an offline job's cameras, say: the "same numbers" of SESSION_SPEC.md) would be
applied to block 0 only by luck of timing. With it, the first command (and every command arriving
before it, e.g. while the scene loads) is applied before block 0 renders; a client that sends
nothing gets block 0 at the source camera after the grace. Commands sent after the first one race
block 0 as before: send a session's initial cameras in one `cameras` command.

A replica holds at most
INSPATIO_MAX_SESSIONS sessions (one more: RESOURCE_EXHAUSTED with RetryInfo); `drain()` (the server's
SIGTERM) ends every session with "shutting_down", after which each stream ends OK.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

from inspatio_world import envvars
from inspatio_world.pipeline.generator import VideoGenerator
from inspatio_world.refusals import QuotaExceeded
from inspatio_world.rpc.convert import ref_to_key
from inspatio_world.rpc.generated import session_pb2, session_pb2_grpc
from inspatio_world.rpc.metrics import ServiceMetrics
from inspatio_world.rpc.session_convert import block_to_proto, command_from_proto, ended_to_proto, ready_to_proto, setup_options
from inspatio_world.sessions.feed import load_scene
from inspatio_world.sessions.metrics import SessionMetrics
from inspatio_world.sessions.session import CLOSED, SHUTTING_DOWN, GenerationSession, SessionBlock, SessionSettings
from inspatio_world.stages.artifacts import scratch
from inspatio_world.stages.identity import ModelIdentity
from inspatio_world.store.base import ObjectStore

RETRY_AFTER_S = 5.0  # a full replica: try again (or another replica) after this long
POLL_SECONDS = 0.1


class SessionSlots:
    """At most `limit` sessions at once; one more is refused at once (QuotaExceeded with a retry delay)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.open = limit, 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.open >= self.limit:
                raise QuotaExceeded("generator", f"this generator replica holds {self.limit} live session(s) already "
                                                 f"(INSPATIO_MAX_SESSIONS); retry later or on another replica", RETRY_AFTER_S)  # fmt: skip
            self.open += 1

    def release(self) -> None:
        with self._lock:
            self.open -= 1


class _Commands(threading.Thread):
    """Reads the client's commands; buffers them until a session is attached, then applies them."""

    def __init__(self, requests: Iterator[session_pb2.GeneratorSessionRequest]) -> None:
        super().__init__(name="session-commands", daemon=True)
        self._requests = requests
        self._lock = threading.Lock()
        self._session: GenerationSession | None = None
        self._buffer: list = []
        self.error: BaseException | None = None
        self.first = threading.Event()  # the first command was read (or the stream ended): block 0 may start

    def attach(self, session: GenerationSession) -> None:
        with self._lock:
            for command, sent in self._buffer:
                session.command(command, sent)
            self._buffer.clear()
            self._session = session

    def run(self) -> None:
        try:
            for request in self._requests:
                if request.WhichOneof("part") != "command":
                    raise ValueError("setup sent twice: after the setup, send only commands")
                command = command_from_proto(request.command)
                with self._lock:
                    if self._session is None:
                        self._buffer.append((command, request.command.sent_unix_ns))
                    else:
                        self._session.command(command, request.command.sent_unix_ns)
                self.first.set()
        except ValueError as error:  # a bad command (or an undecodable message): the stream fails with it
            self.error = error
        except Exception:  # noqa: BLE001 (the call ended: cancelled, or the server stopping)
            pass
        finally:
            self.first.set()


class GeneratorSessionServicer(session_pb2_grpc.GeneratorSessionServiceServicer):
    def __init__(self, store: ObjectStore, generator: VideoGenerator, identity: ModelIdentity, metrics: ServiceMetrics,
                 max_sessions: int | None = None, idle_seconds: float | None = None, max_blocks: int | None = None,
                 start_grace: float | None = None) -> None:  # fmt: skip
        self.store, self.generator, self.identity = store, generator, identity
        self.slots = SessionSlots(envvars.get_positive_int(envvars.MAX_SESSIONS) if max_sessions is None else max_sessions)
        self.idle_seconds = envvars.get_positive_float(envvars.SESSION_IDLE_SECONDS) if idle_seconds is None else idle_seconds
        self.max_blocks = envvars.get_positive_int(envvars.SESSION_MAX_BLOCKS) if max_blocks is None else max_blocks
        self.start_grace = envvars.get_positive_float(envvars.SESSION_START_GRACE_SECONDS) if start_grace is None else start_grace
        self.metrics = SessionMetrics(metrics)
        self._sessions: set[GenerationSession] = set()
        self._lock = threading.Lock()
        self._draining = False

    def drain(self) -> None:
        """End every session with "shutting_down" (and refuse new ones): the server is stopping."""
        with self._lock:
            self._draining = True
            sessions = list(self._sessions)
        for session in sessions:
            session.end(SHUTTING_DOWN)

    def RunSession(self, requests, context) -> Iterator[session_pb2.SessionEvent]:
        first = next(requests, None)
        if first is None or first.WhichOneof("part") != "setup":
            raise ValueError("the first message of RunSession must be the setup")
        setup = first.setup
        settings = SessionSettings(**setup_options(setup), max_blocks=self.max_blocks, idle_seconds=self.idle_seconds)
        settings.check()
        video_key, depth_key = ref_to_key(self.store, setup.video, "setup.video"), ref_to_key(self.store, setup.depth, "setup.depth")
        if self._draining:
            raise QuotaExceeded("generator", "this generator replica is shutting down; retry on another replica", RETRY_AFTER_S)
        self.slots.acquire()
        self.metrics.active.inc()
        session = None
        released = False

        def release() -> None:  # once: the session's worker stopped, its place free again
            nonlocal released
            if released:
                return
            released = True
            try:
                if session is not None:
                    session.end(CLOSED)
                    session.join(timeout=30)  # its worker stops at the next denoising step
                    with self._lock:
                        self._sessions.discard(session)
            finally:  # whatever happened above, the place is free again
                self.metrics.active.dec()
                self.slots.release()

        try:
            commands = _Commands(requests)
            commands.start()  # commands sent meanwhile are applied before block 0
            with scratch() as folder:
                scene = load_scene(self.store, video_key, depth_key, folder, self.generator.models.device)
            session = GenerationSession(self.generator, scene, settings, self.metrics.observers(), start=False)
            with self._lock:
                self._sessions.add(session)
                if self._draining:
                    session.end(SHUTTING_DOWN)
            commands.attach(session)
            yield ready_to_proto(session.info, self.identity)
            # block 0 waits for the first command (or the grace): see the module docstring
            deadline = time.monotonic() + self.start_grace
            while not commands.first.wait(min(POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline or not context.is_active():
                    break
            session.start()
            while True:
                if commands.error is not None:
                    raise commands.error
                if not context.is_active():
                    return
                event = session.next_event(timeout=POLL_SECONDS)
                if isinstance(event, SessionBlock):
                    yield block_to_proto(event)
                elif event is not None:
                    # the place is free before the client hears of the end: a client that opens its
                    # next session right after `ended` is not refused by its own last session
                    release()
                    yield ended_to_proto(event)
                    return
        finally:
            release()
