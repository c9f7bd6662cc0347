"""A stand-in for the SDK's async live session (`AsyncClient.session(...)`), for the gateway's tests.

It speaks the SDK's interface (ready; move/cameras/pause/resume/reset/close coroutines; async iteration
of blocks; `ended`) and steers a camera as the generator does in spirit: a move is a velocity per block
applied frame by frame from the current camera (forward along the view axis, right along the camera's
x, up against its y, yaw/pitch about its own axes, orbit about a point ahead). Each frame is a solid
colour JPEG whose colour depends on its camera, so a test can see the camera in the pixels.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from inspatio_world.client.session import SessionBlock, SessionEnded, SessionInfo  # what the SDK hands the gateway

ORBIT_DISTANCE = 2.0  # the orbit's centre: this far ahead of the camera


def camera_centre(w2c: np.ndarray) -> np.ndarray:
    return -w2c[:3, :3].T @ w2c[:3, 3]


def step_camera(w2c: np.ndarray, move: dict[str, float], fraction: float) -> np.ndarray:
    """One frame's share (`fraction` of a block) of a move, from world-to-camera `w2c`."""
    rot, centre = w2c[:3, :3], camera_centre(w2c)
    right, down, forward = rot[0].copy(), rot[1].copy(), rot[2].copy()
    centre = centre + fraction * (move["forward"] * forward + move["right"] * right - move["up"] * down)
    if move["orbit"]:
        angle = math.radians(move["orbit"] * fraction)
        pivot = centre + ORBIT_DISTANCE * forward
        # the camera travels right around the pivot, turning left to keep facing it
        forward, right = math.cos(angle) * forward - math.sin(angle) * right, math.cos(angle) * right + math.sin(angle) * forward
        centre = pivot - ORBIT_DISTANCE * forward
    if move["yaw"]:
        angle = math.radians(move["yaw"] * fraction)
        forward, right = math.cos(angle) * forward + math.sin(angle) * right, math.cos(angle) * right - math.sin(angle) * forward
    if move["pitch"]:
        angle = math.radians(move["pitch"] * fraction)
        up = -down
        forward, up = math.cos(angle) * forward + math.sin(angle) * up, math.cos(angle) * up - math.sin(angle) * forward
        down = -up
    out = np.eye(4)
    out[:3, :3] = np.stack([right, down, forward])
    out[:3, 3] = -out[:3, :3] @ centre
    return out


def camera_colour(w2c: np.ndarray) -> tuple[int, int, int]:
    """Red: the centre's x; green: its z (forward from the start); blue: where the view axis points (x)."""
    centre, forward = camera_centre(w2c), w2c[2, :3]

    def channel(value: float) -> int:
        return int(max(0, min(255, round(128 + value))))

    return channel(400 * centre[0]), channel(400 * centre[2]), channel(300 * forward[0])


def solid_jpeg(colour: tuple[int, int, int], width: int, height: int, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "JPEG", quality=quality)
    return out.getvalue()


class StandInSession:
    def __init__(self, frames_per_block: int = 4, max_blocks: int = 1000, block_seconds: float = 0.05,
                 width: int = 96, height: int = 64, source_frames: int = 20) -> None:
        self.ready = SessionInfo("standin-1", "a stand-in scene", source_frames, height, width, frames_per_block, max_blocks)
        self.block_seconds = block_seconds
        self.commands: list[tuple[str, Any]] = []
        self.ended: SessionEnded | None = None
        self.closed = self.exited = False
        self.generation, self.index, self.frame = 0, 0, 0
        self.paused = False
        self.camera = np.eye(4)
        self.velocity = dict.fromkeys(("forward", "right", "up", "yaw", "pitch", "orbit"), 0.0)
        self.queued: list[np.ndarray] = []  # absolute cameras given, not used yet
        self.last_command_ns: int | None = None
        self.delivered = 0
        self._changed = asyncio.Event()

    def _command(self, kind: str, args: Any = None) -> None:
        self.commands.append((kind, args))
        self.last_command_ns = time.time_ns()
        self._changed.set()

    async def move(self, forward=0.0, right=0.0, up=0.0, yaw=0.0, pitch=0.0, orbit=0.0) -> None:
        self.velocity = dict(forward=forward, right=right, up=up, yaw=yaw, pitch=pitch, orbit=orbit)
        self._command("move", dict(self.velocity))

    async def cameras(self, cameras) -> None:
        self.queued.extend(np.asarray(c, dtype=np.float64).reshape(4, 4) for c in cameras)
        self._command("cameras", len(cameras))

    async def pause(self) -> None:
        self.paused = True
        self._command("pause")

    async def resume(self) -> None:
        self.paused = False
        self._command("resume")

    async def reset(self) -> None:
        self.generation, self.index, self.frame = self.generation + 1, 0, 0
        self.camera, self.queued = np.eye(4), []
        self._command("reset")

    async def close(self) -> None:
        self.closed = True
        self._command("close")

    def __aiter__(self):
        return self._blocks()

    async def _blocks(self):
        while not self.closed and self.delivered < self.ready.max_blocks:
            if self.paused:
                self._changed.clear()
                await self._changed.wait()
                continue
            await asyncio.sleep(self.block_seconds)
            if self.paused or self.closed:
                continue
            started = time.perf_counter()
            cameras = []
            for _ in range(self.ready.frames_per_block):
                self.camera = self.queued.pop(0) if self.queued else step_camera(self.camera, self.velocity, 1 / self.ready.frames_per_block)
                cameras.append(self.camera)
            jpeg = [solid_jpeg(camera_colour(c), self.ready.width, self.ready.height) for c in cameras]
            latency = None if self.last_command_ns is None else (time.time_ns() - self.last_command_ns) / 1e9
            block = SessionBlock(self.generation, self.index, self.frame, jpeg, np.stack(cameras),
                                 [(self.frame + i) % self.ready.source_frames for i in range(len(cameras))],
                                 time.perf_counter() - started, latency, 0)
            self.index, self.frame, self.delivered = self.index + 1, self.frame + len(cameras), self.delivered + 1
            yield block
        self.ended = SessionEnded("closed" if self.closed else "max_blocks", self.delivered)


@dataclass
class StandInSessions:
    """A session factory for the gateway (`open_session(token=..., **start)`) that records each call."""

    session_options: dict[str, Any] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[StandInSession] = field(default_factory=list)
    refuse: Exception | None = None  # raised on opening, as the SDK raises a refusal

    def __call__(self, **start: Any):
        return self._open(start)

    @contextlib.asynccontextmanager
    async def _open(self, start: dict[str, Any]):
        self.calls.append(start)
        if self.refuse is not None:
            raise self.refuse
        session = StandInSession(**self.session_options)
        self.sessions.append(session)
        try:
            yield session
        finally:
            session.exited = True
