"""A live session's cameras: absolute cameras appended in order, relative moves turned into per-frame
cameras, and the camera each output position uses.

Conventions are the per-frame trajectory format's (geometry/trajectory.py): world-to-camera 4x4
float64, OpenCV camera axes (x right, y down, z forward), in the depth stage's world (DA3's,
normalised to the first source camera).

A `CameraMove` is motion per block (`FRAMES_PER_MOVE` = 12 frames): it appends 12 cameras, each one
1/12 of the motion on from the previous, starting at the current camera (the last one appended, or
the camera held at the frontier). Positions nobody gave a camera for hold: at the last camera given,
or, before any, at the source camera of the position's source frame (the identity motion: the render
is the source frame itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

FRAMES_PER_MOVE = 12  # a move's motion is per block of 12 frames
CAMERA_NUMBERS = 16
MAX_ABS_TRANSLATION = 1000.0  # as a per-frame trajectory file's (geometry/trajectory.py)


class CameraError(ValueError):
    """A camera is not 16 finite numbers of an invertible world-to-camera matrix (INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class CameraMove:
    """Relative motion per block: metres of the scene's normalised scale, and degrees."""

    forward: float = 0.0  # along the viewing axis (+ forward)
    right: float = 0.0  # strafe
    up: float = 0.0
    yaw: float = 0.0  # turn right (+)
    pitch: float = 0.0  # look up (+)
    orbit: float = 0.0  # around the scene's centre, camera moving right (+)

    def check(self) -> None:
        for name in ("forward", "right", "up", "yaw", "pitch", "orbit"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise CameraError(f"move.{name} is {value}: must be a finite number")
        if max(abs(self.forward), abs(self.right), abs(self.up)) > MAX_ABS_TRANSLATION:
            raise CameraError(f"move translation exceeds {MAX_ABS_TRANSLATION:g} units per block")


def check_camera(values: Sequence[float], where: str = "camera") -> np.ndarray:
    """16 numbers (row-major) -> w2c float64 [4, 4]; CameraError unless finite, last row 0 0 0 1 and invertible."""
    w2c = np.asarray(values, dtype=np.float64)
    if w2c.size != CAMERA_NUMBERS:
        raise CameraError(f"{where}: expected 16 numbers (a row-major 4x4 world-to-camera matrix), got {w2c.size}")
    if not np.isfinite(w2c).all():
        raise CameraError(f"{where}: every number must be finite")
    w2c = w2c.reshape(4, 4)
    if not np.allclose(w2c[3], (0, 0, 0, 1), rtol=0, atol=1e-9):
        raise CameraError(f"{where}: last row must be 0 0 0 1, got {w2c[3].tolist()}")
    if abs(np.linalg.det(w2c[:3, :3])) < 1e-9:
        raise CameraError(f"{where}: the matrix is not invertible")
    if np.abs(w2c[:3, 3]).max() > MAX_ABS_TRANSLATION:
        raise CameraError(f"{where}: translation {w2c[:3, 3].tolist()} exceeds {MAX_ABS_TRANSLATION:g} units")
    return w2c


def _rotation_x(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rotation_y(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rigid_c2w(w2c: np.ndarray) -> np.ndarray:
    """The camera-to-world transform of `w2c` with its rotation made the nearest proper rotation.

    A move is a rigid motion; a held source camera can be slightly (or, from untrained depth
    weights, wholly) non-rigid, and composing orbits of such a matrix drifts towards a singular one.
    Rigid transforms are inverted in closed form, so this never fails."""
    u, _, vt = np.linalg.svd(np.asarray(w2c, dtype=np.float64)[:3, :3])
    rotation = u @ vt
    if np.linalg.det(rotation) < 0:
        rotation = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    c2w = np.eye(4)
    c2w[:3, :3] = rotation.T
    c2w[:3, 3] = -rotation.T @ np.asarray(w2c, dtype=np.float64)[:3, 3]
    return c2w


def move_cameras(start_w2c: np.ndarray, move: CameraMove, centre: np.ndarray, frames: int = FRAMES_PER_MOVE) -> np.ndarray:
    """w2c [frames, 4, 4]: each frame 1/frames of `move` on from the one before, the first from `start_w2c`.

    Per frame, in the camera's own axes: yaw about y (turning the view from +z towards +x), pitch
    about x (towards -y, up), then translation (right = +x, up = -y, forward = +z); then the orbit
    turns camera and view rigidly about the axis through `centre` parallel to the camera's y axis,
    moving the camera towards its +x."""
    step = np.eye(4)
    step[:3, :3] = _rotation_y(move.yaw / frames) @ _rotation_x(move.pitch / frames)
    step[:3, 3] = np.array([move.right, -move.up, move.forward]) / frames
    c2w = _rigid_c2w(start_w2c)
    out = np.empty((frames, 4, 4))
    for i in range(frames):
        c2w = c2w @ step
        if move.orbit:
            axis_frame = c2w[:3, :3]
            turn = axis_frame @ _rotation_y(-move.orbit / frames) @ axis_frame.T  # about the camera's y, through centre
            orbited = np.eye(4)
            orbited[:3, :3] = turn @ c2w[:3, :3]
            orbited[:3, 3] = centre + turn @ (c2w[:3, 3] - centre)
            c2w = orbited
        out[i, :3, :3] = c2w[:3, :3].T
        out[i, :3, 3] = -c2w[:3, :3].T @ c2w[:3, 3]
        out[i, 3] = (0, 0, 0, 1)
    return out


def scene_centre(depth0: np.ndarray, source_c2w0: np.ndarray) -> np.ndarray:
    """The point an orbit turns about: the median depth of source frame 0, on its optical axis (world xyz)."""
    distance = float(np.median(np.clip(np.asarray(depth0, dtype=np.float64), 1e-4, 1e4)))
    return (np.asarray(source_c2w0, dtype=np.float64) @ np.array([0.0, 0.0, distance, 1.0]))[:3]


@dataclass(frozen=True)
class CommandMark:
    """Where a command's cameras start, for latency: when it came (monotonic) and its client time."""

    position: int
    received: float
    sent_unix_ns: int


class CameraPath:
    """The cameras of one generation, by output position.

    `cameras` holds the cameras given (absolute or from moves) and, below `fixed`, those already used
    by a render (holds included); new cameras are appended after both."""

    def __init__(self, held_camera: Callable[[int], np.ndarray], centre: np.ndarray) -> None:
        """`held_camera(t)`: the camera at position t before any is given (the source camera of t's frame)."""
        self._held_camera = held_camera
        self.centre = centre
        self.cameras: list[np.ndarray] = []
        self.given = False  # a camera was given (absolute or move): holds repeat the last one
        self.marks: list[CommandMark] = []  # in position order
        self._measured = 0

    def __len__(self) -> int:
        return len(self.cameras)

    def append(self, w2c: np.ndarray, frontier: int, received: float = 0.0, sent_unix_ns: int = 0) -> int:
        """Append cameras [n, 4, 4] after the cameras given and the positions used so far (`frontier`:
        the first position not yet rendered); returns the position of the first."""
        self.fix(frontier)
        position = len(self.cameras)
        self.cameras.extend(np.asarray(w2c, dtype=np.float64))
        self.given = True
        self.marks.append(CommandMark(position, received, sent_unix_ns))
        return position

    def append_move(self, move: CameraMove, frontier: int, received: float = 0.0, sent_unix_ns: int = 0) -> int:
        self.fix(frontier)
        return self.append(move_cameras(self.current(), move, self.centre), frontier, received, sent_unix_ns)

    def current(self) -> np.ndarray:
        """The camera the next move starts from."""
        return self.cameras[-1] if self.cameras else self._held_camera(0)

    def fix(self, stop: int) -> None:
        """Give positions [len, stop) their held camera."""
        while len(self.cameras) < stop:
            t = len(self.cameras)
            self.cameras.append(self.cameras[-1] if self.given else self._held_camera(t))

    def w2c(self, span: slice) -> np.ndarray:
        """Cameras [n, 4, 4] of positions `span` (held ones fixed on the way)."""
        self.fix(span.stop)
        return np.stack(self.cameras[span])

    def latest_sent(self, stop: int) -> int:
        """The client time of the latest command whose cameras start before `stop` (0: none)."""
        return max((m.sent_unix_ns for m in self.marks if m.position < stop), default=0)

    def take_marks(self, stop: int) -> list[CommandMark]:
        """Commands not measured yet whose first camera is before `stop` (each is measured once: at the
        first block shown that uses it)."""
        taken = [m for m in self.marks[self._measured:] if m.position < stop]
        self._measured += len(taken)
        return taken
