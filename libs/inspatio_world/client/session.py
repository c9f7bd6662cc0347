"""Live sessions in the SDK (sync): steer the camera while the world is generated, block by block.

    with Client("127.0.0.1:50051") as client:
        with client.session("clip.mp4", seed=0) as session:    # or video_uri="s3://bucket/key"
            print(session.ready)                               # SessionInfo, once caption and depth are ready
            sent = session.move(forward=0.2, yaw=5)            # for the blocks after this one
            for block in session:                              # SessionBlock, in order
                print(block.index, len(block.jpeg), block.latency_s, block.reflects(sent))
                if block.index == 4:
                    session.close()
        print(session.ended)                                   # SessionEnded("closed", 5)

Entering the `with` opens the session: the upload (a local file goes up in chunks, as `submit`
sends it), then caption and depth (the `stage` events are kept in `session.stages`), until the
generator's `ready`; a refusal raises there (grpc.RpcError; `error_details` reads its field and
retry delay: RESOURCE_EXHAUSTED with a retry delay means every generator replica is full). Iteration
ends with the session (`session.ended`: closed, idle, max_blocks, shutting_down); any other end of
the stream raises its grpc.RpcError. Leaving the `with` cancels a session that has not ended.

Commands may be sent from any thread, while another iterates. Each command returns its stamp: the
client's clock when it was made (`sent_unix_ns`, nanoseconds), strictly increasing within this
process, so it also names the command. A block echoes the stamp of the latest command its cameras
reflect (`command_sent_unix_ns`); with commands sent from one thread, the first block that used
command `sent` is the first with `block.reflects(sent)` (`inspatio bench session` measures so).
The asyncio twin is `async_session.AsyncSession` (`AsyncClient.session`). numpy loads only when a block arrives or a
numpy array of cameras is given, so importing the SDK stays light.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc

from ..rpc.generated import common_pb2, session_pb2, session_pb2_grpc
from .sdk import file_chunks, video_source

AUTOENCODERS = {"wan_vae": common_pb2.AUTOENCODER_WAN_VAE, "taehv": common_pb2.AUTOENCODER_TAEHV}
TIME_POLICIES = {"bounce": session_pb2.TIME_POLICY_BOUNCE, "freeze": session_pb2.TIME_POLICY_FREEZE}
BACKPRESSURES = {"latest": session_pb2.BACKPRESSURE_LATEST, "wait": session_pb2.BACKPRESSURE_WAIT}
MOVE_FIELDS = ("forward", "right", "up", "yaw", "pitch", "orbit")
_END = object()


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    caption: str  # the prompt the generator uses
    source_frames: int
    height: int
    width: int
    frames_per_block: int  # 12 (the first block has 9)
    max_blocks: int

    @classmethod
    def from_proto(cls, ready: session_pb2.SessionReady) -> "SessionInfo":
        return cls(ready.session_id, ready.caption, ready.source_frames, ready.height, ready.width, ready.frames_per_block,
                   ready.max_blocks)  # fmt: skip


@dataclass(frozen=True)
class SessionBlock:
    generation: int  # bumped by each reset
    index: int  # within its generation
    first_frame: int
    jpeg: list[bytes]  # one JPEG per frame
    cameras: Any  # numpy [F, 4, 4] world-to-camera, the cameras the render used
    source_frames: list[int]  # the source frame under each output frame
    seconds: float  # the generator's time for this block
    latency_s: float | None  # this client's clock now minus the sent time of the latest command it reflects
    dropped_before: int  # blocks dropped (backpressure latest) since the previous one
    command_sent_unix_ns: int = 0  # the stamp of the latest command these cameras reflect (0: none)
    received_unix_ns: int = 0  # this client's clock when the block arrived

    @classmethod
    def from_proto(cls, block: session_pb2.SessionBlock, received_ns: int | None = None) -> "SessionBlock":
        import numpy as np

        cameras = np.array([list(c.w2c) for c in block.cameras], dtype=np.float64).reshape(-1, 4, 4)
        sent = block.command_sent_unix_ns
        received = received_ns or time.time_ns()
        latency = (received - sent) / 1e9 if sent else None
        return cls(block.generation, block.index, block.first_frame, list(block.jpeg), cameras, list(block.source_frames),
                   block.seconds, latency, block.dropped_before, sent, received)  # fmt: skip

    def reflects(self, sent_unix_ns: int) -> bool:
        """Whether this block's cameras reflect the command stamped `sent_unix_ns` (a command's return
        value), or a later one of the same sender (so, moves being appended in order, that one too)."""
        return self.command_sent_unix_ns >= sent_unix_ns > 0


@dataclass(frozen=True)
class SessionEnded:
    reason: str  # closed, idle, max_blocks, shutting_down
    blocks: int


@dataclass(frozen=True)
class StageTime:
    """One of the coordinator's `stage` events while the session opens (caption, depth)."""

    stage: str
    seconds: float
    cache_hit: bool


def _enum(table: dict[str, int], name: str, what: str) -> int:
    if name not in table:
        raise ValueError(f"{what} {name!r}: choose from {sorted(table)}")
    return table[name]


def start_messages(video: str | Path | None = None, *, video_uri: str | None = None, prompt: str | None = None, seed: int = 0,
                   autoencoder: str = "taehv", time_policy: str = "bounce", backpressure: str = "latest",
                   jpeg_quality: int = 85) -> Callable[[], Iterator[session_pb2.SessionRequest]]:  # fmt: skip
    """The opening messages of a session (start, then the upload's chunks and upload_done), as a
    function that makes them afresh (the upload is read again if the session is reopened).
    Everything checkable here is checked now: the file exists, the names are known."""
    if (video is None) == (video_uri is None):
        raise ValueError("give a video: a local file (or s3:// URI) as `video`, or `video_uri`, not both")
    source = video_uri if video_uri is not None else video_source(video)
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality {jpeg_quality}: expected 1-100")
    settings = dict(seed=seed, autoencoder=_enum(AUTOENCODERS, autoencoder, "autoencoder"),
                    time_policy=_enum(TIME_POLICIES, time_policy, "time_policy"),
                    backpressure=_enum(BACKPRESSURES, backpressure, "backpressure"), jpeg_quality=jpeg_quality)  # fmt: skip
    if prompt is not None:
        settings["prompt"] = prompt

    def messages() -> Iterator[session_pb2.SessionRequest]:
        if isinstance(source, str):
            yield session_pb2.SessionRequest(start=session_pb2.SessionStart(video_uri=source, **settings))
            return
        yield session_pb2.SessionRequest(start=session_pb2.SessionStart(upload_name=source.name, **settings))
        for chunk in file_chunks(source):
            yield session_pb2.SessionRequest(chunk=chunk)
        yield session_pb2.SessionRequest(upload_done=True)

    return messages


def move_command(**move: float) -> session_pb2.SessionRequest:
    unknown = set(move) - set(MOVE_FIELDS)
    if unknown:
        raise TypeError(f"move() got unknown directions {sorted(unknown)}; known: {', '.join(MOVE_FIELDS)}")
    return _command(move=session_pb2.CameraMove(**{k: float(v) for k, v in move.items()}))


def cameras_command(cameras: Any) -> session_pb2.SessionRequest:
    """`cameras`: world-to-camera 4x4 matrices, a numpy array [N, 4, 4] (or [4, 4]) or nested lists."""
    rows = cameras.tolist() if hasattr(cameras, "tolist") else cameras
    if rows and not isinstance(rows[0][0], (list, tuple)):
        rows = [rows]  # one camera
    messages = []
    for i, camera in enumerate(rows):
        flat = [float(v) for row in camera for v in row]
        if len(flat) != 16:
            raise ValueError(f"camera {i}: expected a 4x4 matrix, got {len(flat)} numbers")
        messages.append(session_pb2.Camera(w2c=flat))
    if not messages:
        raise ValueError("cameras(): give at least one camera")
    return _command(cameras=session_pb2.Cameras(cameras=messages))


def flag_command(name: str) -> session_pb2.SessionRequest:
    return _command(**{name: True})


_stamp_lock = threading.Lock()
_last_stamp = 0


def command_stamp() -> int:
    """time.time_ns(), made strictly increasing within the process: a command's stamp names it."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(_last_stamp + 1, time.time_ns())
        return _last_stamp


def _command(**command: Any) -> session_pb2.SessionRequest:
    return session_pb2.SessionRequest(command=session_pb2.SessionCommand(sent_unix_ns=command_stamp(), **command))


class SessionCommands:
    """The commands of a session; `_send` is the transport's (sync here, awaited in the async twin).
    Each returns the command's stamp (`sent_unix_ns`; awaited in the async twin)."""

    def _send(self, request: session_pb2.SessionRequest):
        raise NotImplementedError

    def move(self, forward: float = 0.0, right: float = 0.0, up: float = 0.0, yaw: float = 0.0, pitch: float = 0.0,
             orbit: float = 0.0):  # fmt: skip
        """Relative motion per block from the next block on (metres of the scene's scale, degrees)."""
        return self._send(move_command(forward=forward, right=right, up=up, yaw=yaw, pitch=pitch, orbit=orbit))

    def cameras(self, cameras: Any):
        """Absolute world-to-camera cameras, one per frame, appended after those already given."""
        return self._send(cameras_command(cameras))

    def pause(self):
        return self._send(flag_command("pause"))

    def resume(self):
        return self._send(flag_command("resume"))

    def reset(self):
        """Start again from block 0 (a new generation; blocks of the older one never arrive)."""
        return self._send(flag_command("reset"))


@dataclass
class _Opened:
    """What opening a session read: the stage events and the first event that is neither."""

    stages: list[StageTime] = field(default_factory=list)
    ready: SessionInfo | None = None
    ended: SessionEnded | None = None


def opening_event(event: session_pb2.SessionEvent, opened: _Opened) -> bool:
    """Take one event read while opening; True once the session is open (ready, or already ended)."""
    kind = event.WhichOneof("event")
    if kind == "stage":
        opened.stages.append(StageTime(event.stage.stage, event.stage.seconds, event.stage.cache_hit))
    elif kind == "ready":
        opened.ready = SessionInfo.from_proto(event.ready)
    elif kind == "ended":
        opened.ended = SessionEnded(event.ended.reason, event.ended.blocks)
    return opened.ready is not None or opened.ended is not None


class Session(SessionCommands):
    """One live session (see the module docstring). Made by `Client.session`; open it with `with`."""

    def __init__(self, channel: grpc.Channel, opening: Callable[[], Iterator[session_pb2.SessionRequest]],
                 timeout: float | None = None, attempts: int = 6, backoff: float = 0.5) -> None:  # fmt: skip
        """`timeout`: the whole session's deadline in seconds (None: none)."""
        self._stub = session_pb2_grpc.SessionServiceStub(channel)
        self._opening, self._timeout, self._attempts, self._backoff = opening, timeout, attempts, backoff
        self._queue: queue.SimpleQueue | None = None
        self._call = None
        self._lock = threading.Lock()
        self._closed = False
        self.ready: SessionInfo | None = None
        self.ended: SessionEnded | None = None
        self.stages: list[StageTime] = []

    def __enter__(self) -> "Session":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.cancel()

    def open(self) -> "Session":
        """Upload, caption and depth, until the generator is ready; retried while the coordinator is
        UNAVAILABLE (restarting). Raises the call's grpc.RpcError for a refusal."""
        for attempt in range(self._attempts):
            self._queue = queue.SimpleQueue()
            self._call = self._stub.OpenSession(self._requests(self._queue), timeout=self._timeout)
            opened = _Opened()
            try:
                for event in self._call:
                    if opening_event(event, opened):
                        break
            except grpc.RpcError as exc:
                self._queue.put(_END)
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == self._attempts - 1:
                    raise
                time.sleep(self._backoff * 2**attempt)
                continue
            self.stages, self.ready, self.ended = opened.stages, opened.ready, opened.ended
            if self.ready is None and self.ended is None:
                raise RuntimeError("the session's stream ended before the generator was ready")
            return self
        raise AssertionError("unreachable")

    def _requests(self, commands: queue.SimpleQueue) -> Iterator[session_pb2.SessionRequest]:
        yield from self._opening()
        while (request := commands.get()) is not _END:
            yield request

    def _send(self, request: session_pb2.SessionRequest) -> int:
        with self._lock:
            if self._queue is None:
                raise RuntimeError("the session is not open yet: use it inside `with client.session(...)`")
            if self._closed:
                raise RuntimeError("the session was closed: no more commands")
            self._queue.put(request)
        return request.command.sent_unix_ns

    def close(self) -> None:
        """Ask the generator to end the session; the iteration then ends (`ended.reason` "closed")."""
        self._send(flag_command("close"))
        with self._lock:
            self._closed = True
            self._queue.put(_END)  # nothing follows: the request stream is half-closed

    def cancel(self) -> None:
        """Leave at once (the generator's stream is cancelled); nothing if the session has ended."""
        if self._queue is not None:
            self._queue.put(_END)
        if self._call is not None and self.ended is None:
            self._call.cancel()

    def __iter__(self) -> Iterator[SessionBlock]:
        if self._call is None:
            raise RuntimeError("the session is not open yet: use it inside `with client.session(...)`")
        if self.ended is not None:
            return
        for event in self._call:
            kind = event.WhichOneof("event")
            if kind == "block":
                yield SessionBlock.from_proto(event.block, time.time_ns())
            elif kind == "ended":
                self.ended = SessionEnded(event.ended.reason, event.ended.blocks)
                return

