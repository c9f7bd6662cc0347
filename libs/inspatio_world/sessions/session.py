"""GenerationSession: a live session in one process. Commands in (`command`), events out (`next_event`).

A worker thread runs the generator (pipeline/generator.py VideoGenerator.stream) over a SessionFeed
whose render frames are rendered from the cameras the session has when each block needs them. Each
generation (bumped by `Reset`) is one generator stream from block 0: KV cache, autoencoder caches and
the noise RNG start again from the seed; a block of an older generation is never handed out.

The generator's request has T = the frames of `max_blocks` blocks (12 * max_blocks - 3): upstream
draws the initial noise of every block at once, so a session's numbers equal those of a job of
`max_blocks` blocks given the same cameras (a job of another length draws other noise).

Backpressure: at most one block waits to be read. `latest`: a newer block replaces it (counted in the
next block's `dropped_before`); `wait`: no block starts while one waits. `Pause`: no block starts until
`Resume`. The session ends (`SessionEnded` is the last event) on `Close` ("closed"), after `max_blocks`
blocks of a generation ("max_blocks"), with no command and nothing read for `idle_seconds` ("idle"),
or by `end(reason)` (a draining server: "shutting_down").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..media.video_io import to_uint8
from ..pipeline.generator import LATENT_FRAMES_PER_PIXEL_GROUP, GenerationRequest, VideoGenerator
from .cameras import CameraMove, CameraPath, check_camera
from .feed import SessionFeed, SessionScene
from .jpeg import encode_jpegs
from .timeline import BOUNCE, TIME_POLICIES, source_frames

log = logging.getLogger(__name__)

LATEST, WAIT = "latest", "wait"
BACKPRESSURES = (LATEST, WAIT)
CLOSED, IDLE, MAX_BLOCKS, SHUTTING_DOWN = "closed", "idle", "max_blocks", "shutting_down"
DEFAULT_JPEG_QUALITY = 85
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class SessionSettings:
    prompt: str
    seed: int = 0
    autoencoder: str = "wan_vae"
    time_policy: str = BOUNCE
    backpressure: str = LATEST
    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    max_blocks: int = 100
    idle_seconds: float = 60.0

    def check(self) -> None:
        if not self.prompt.strip():
            raise ValueError("prompt is empty")
        if self.time_policy not in TIME_POLICIES:
            raise ValueError(f"time policy {self.time_policy!r}: choose from {TIME_POLICIES}")
        if self.backpressure not in BACKPRESSURES:
            raise ValueError(f"backpressure {self.backpressure!r}: choose from {BACKPRESSURES}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality}: must be between 1 and 100")
        if self.max_blocks < 1 or not self.idle_seconds > 0:
            raise ValueError("max_blocks and idle_seconds must be positive")


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    caption: str
    source_frames: int
    height: int
    width: int
    frames_per_block: int  # 12; the first block has 9
    max_blocks: int


@dataclass(frozen=True)
class SessionBlock:
    generation: int
    index: int
    first_frame: int
    images: torch.Tensor  # uint8 [F, H, W, 3], what the JPEGs encode (a job's lossless block frames)
    jpeg: list[bytes]
    cameras: np.ndarray  # w2c [F, 4, 4] the render of each frame used
    source_frames: list[int]
    seconds: float  # render + encode + generate + decode
    command_sent_unix_ns: int  # the latest command these cameras reflect (client clock; 0: none)
    dropped_before: int  # blocks dropped (latest) since the previous block handed out


@dataclass(frozen=True)
class SessionEnded:
    reason: str
    blocks: int  # blocks handed out


# --- commands ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SetCameras:
    w2c: np.ndarray  # [N, 4, 4] (or [N, 16]): appended after the cameras given


@dataclass(frozen=True)
class Move:
    move: CameraMove


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class Close:
    pass


Command = SetCameras | Move | Pause | Resume | Reset | Close


class _Superseded(Exception):
    """The generation a worker runs is no longer current (a reset, or the end)."""


def request_frames(max_blocks: int, frames_per_block: int) -> int:
    """Input frames whose latents make exactly `max_blocks` blocks: 4 * latents - 3."""
    return LATENT_FRAMES_PER_PIXEL_GROUP * max_blocks * frames_per_block - 3


@dataclass
class SessionObservers:
    """Hooks for metrics (services); all optional."""

    block_seconds: Callable[[float], None] = lambda seconds: None
    command_to_frame: Callable[[float], None] = lambda seconds: None
    dropped: Callable[[int], None] = lambda n: None


class GenerationSession:
    """One live session. Thread-safe: `command` from one thread, `next_event` from another."""

    def __init__(self, generator: VideoGenerator, scene: SessionScene, settings: SessionSettings,
                 observers: SessionObservers | None = None, clock: Callable[[], float] = time.monotonic,
                 session_id: str | None = None, start: bool = True) -> None:  # fmt: skip
        """`start` False: no block starts until `start()` (commands given before then apply to block 0)."""
        settings.check()
        # A sampler (KV cache) of its own: sessions and jobs on one replica never share one.
        self._generator = VideoGenerator(generator.models, generator.sampler.config)
        if getattr(generator.models, settings.autoencoder, None) is None:
            raise ValueError(f"autoencoder {settings.autoencoder!r} is not loaded on this generator")
        self.scene, self.settings = scene, settings
        self.observers = observers or SessionObservers()
        self._clock = clock
        latents_per_block = generator.sampler.config.frames_per_block
        self._timeline = source_frames(scene.count, request_frames(settings.max_blocks, latents_per_block), settings.time_policy)
        self._centre = scene.centre()
        self.info = SessionInfo(session_id or uuid.uuid4().hex, settings.prompt, scene.count, scene.height, scene.width,
                                LATENT_FRAMES_PER_PIXEL_GROUP * latents_per_block, settings.max_blocks)  # fmt: skip
        self._lock = threading.Condition()
        self._generation = 0
        self._path = self._new_path()
        self._feed: SessionFeed | None = None
        self._paused = False
        self._pending: SessionBlock | None = None
        self._delivered = 0
        self._ended: SessionEnded | None = None
        self._ended_taken = False
        self._error: BaseException | None = None
        self._last_activity = clock()
        self._worker = threading.Thread(target=self._run, name=f"session-{self.info.session_id[:8]}", daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start generating (once)."""
        if not self._worker.is_alive() and self._worker.ident is None:
            self._last_activity = self._clock()
            self._worker.start()

    # --- the caller's side ------------------------------------------------------------------------
    def command(self, command: Command, sent_unix_ns: int = 0) -> None:
        """Apply a command; CameraError (a ValueError) for a bad camera, before anything changes."""
        received = self._clock()
        if isinstance(command, SetCameras):
            w2c = np.asarray(command.w2c, dtype=np.float64).reshape(-1, 16)
            cameras = np.stack([check_camera(row, f"cameras[{i}]") for i, row in enumerate(w2c)]) if len(w2c) else None
        elif isinstance(command, Move):
            command.move.check()
        with self._lock:
            self._last_activity = received
            if self._ended is not None:
                return
            frontier = self._feed.rendered if self._feed is not None else 0
            if isinstance(command, SetCameras):
                if cameras is not None:
                    self._path.append(cameras, frontier, received, sent_unix_ns)
            elif isinstance(command, Move):
                self._path.append_move(command.move, frontier, received, sent_unix_ns)
            elif isinstance(command, Pause):
                self._paused = True
            elif isinstance(command, Resume):
                self._paused = False
            elif isinstance(command, Reset):
                self._generation += 1
                self._path = self._new_path()
                self._feed = None
                self._pending = None  # never hand out a block of an older generation
            elif isinstance(command, Close):
                self._end(CLOSED)
            else:
                raise TypeError(f"unknown session command {command!r}")
            self._lock.notify_all()

    def next_event(self, timeout: float | None = None) -> SessionBlock | SessionEnded | None:
        """The next block, then (once) the SessionEnded; None when nothing came within `timeout`.
        Raises the worker's error if generation failed."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._lock:
            while True:
                self._check_idle()
                if self._pending is not None:
                    block, self._pending = self._pending, None
                    self._delivered += 1
                    self._last_activity = self._clock()
                    self._lock.notify_all()
                    return block
                if self._error is not None:
                    raise self._error
                if self._ended is not None and not self._ended_taken:
                    self._ended_taken = True
                    return SessionEnded(self._ended.reason, self._delivered)
                if self._ended is not None:
                    return None
                left = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - self._clock())
                if left <= 0:
                    return None
                self._lock.wait(left)

    def end(self, reason: str) -> None:
        """End the session (a draining server: SHUTTING_DOWN); the block waiting is still handed out."""
        with self._lock:
            self._end(reason)
            self._lock.notify_all()

    @property
    def ended(self) -> SessionEnded | None:
        return self._ended

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker to stop; nothing to wait for when it never started (a session ended
        between `ready` and block 0)."""
        if self._worker.ident is not None:
            self._worker.join(timeout)

    # --- state (under the lock) ---------------------------------------------------------------------
    def _new_path(self) -> CameraPath:
        return CameraPath(lambda t: self.scene.source_w2c(self._timeline[t]), self._centre)

    def _end(self, reason: str) -> None:
        if self._ended is None:
            self._ended = SessionEnded(reason, 0)

    def _check_idle(self) -> None:
        if self._ended is None and self._clock() - self._last_activity > self.settings.idle_seconds:
            self._end(IDLE)
            self._lock.notify_all()

    def _may_start(self, generation: int) -> bool:
        if self._ended is not None or generation != self._generation:
            raise _Superseded
        return not self._paused and (self.settings.backpressure != WAIT or self._pending is None)

    def _stop_check(self, generation: int) -> Callable[[], None]:
        def check() -> None:
            if self._ended is not None or generation != self._generation:
                raise _Superseded

        return check

    # --- the worker -------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._ended is not None:
                        return
                    generation = self._generation
                    path = self._path
                    feed = SessionFeed(self.scene, self._timeline, lambda span, p=path: self._targets(p, span),
                                       lambda p=path: len(p))  # fmt: skip
                    self._feed = feed
                try:
                    self._run_generation(generation, path, feed)
                except _Superseded:
                    continue
        except BaseException as error:  # noqa: BLE001 (handed to the reader)
            log.exception("session %s failed", self.info.session_id)
            with self._lock:
                self._error = error
                self._end(CLOSED)
                self._lock.notify_all()

    def _targets(self, path: CameraPath, span: slice) -> np.ndarray:
        with self._lock:
            return path.w2c(span)

    def _run_generation(self, generation: int, path: CameraPath, feed: SessionFeed) -> None:
        settings = self.settings
        request = GenerationRequest(feed.source, feed.render, feed.mask, settings.prompt, settings.seed, settings.autoencoder,
                                    feed.ensure)  # fmt: skip
        stream = self._generator.stream(request, self._stop_check(generation))
        try:
            for index in range(settings.max_blocks):
                with self._lock:
                    while not self._may_start(generation):
                        self._check_idle()
                        self._lock.wait(POLL_SECONDS)
                started = time.perf_counter()
                block = next(stream)
                images = to_uint8(block.frames.float().cpu())
                span = slice(block.first_frame, block.first_frame + images.shape[0])
                jpeg = encode_jpegs(images, settings.jpeg_quality)
                seconds = time.perf_counter() - started
                with self._lock:
                    if generation != self._generation or self._ended is not None:
                        raise _Superseded
                    marks = path.take_marks(span.stop)
                    now = self._clock()
                    for mark in marks:
                        self.observers.command_to_frame(now - mark.received)
                    dropped = 0
                    if self._pending is not None:  # latest: the unread block is dropped
                        dropped = self._pending.dropped_before + 1
                        self.observers.dropped(1)
                    self._pending = SessionBlock(
                        generation, index, block.first_frame, images, jpeg, np.stack(path.cameras[span]),
                        self._timeline[span], seconds, path.latest_sent(span.stop), dropped,
                    )  # fmt: skip
                    self.observers.block_seconds(seconds)
                    self._lock.notify_all()
            with self._lock:
                if generation == self._generation:
                    self._end(MAX_BLOCKS)
                    self._lock.notify_all()
            raise _Superseded
        finally:
            stream.close()
