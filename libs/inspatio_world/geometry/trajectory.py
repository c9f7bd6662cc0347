"""Camera trajectories: trajectory files, their resampling to frames, and the target camera poses.

Two file formats (blank lines and lines starting with `#` are ignored; errors name the file line):

* **Keyframes** (upstream's `traj/*.txt`): exactly 3 lines of whitespace-separated floats, which may
  differ in length: pitch keyframes in degrees ("x_up"), yaw keyframes in degrees ("y_left"), and r.
  Each line is resampled on its own over the whole video (keyframes evenly spaced in time).
* **Per-frame cameras**: one 4x4 world-to-camera matrix per line (16 numbers, row-major, OpenCV axes,
  last row 0 0 0 1), one line per output frame. A file is read this way when its lines hold 16
  numbers and it does not have exactly 3 lines; a 3-line file only when every line ends in 0 0 0 1.

Conventions (OpenCV camera axes: x right, y down, z forward; poses are camera-to-world "c2w" unless
named w2c). A keyframe pose is an orbit in camera 0's frame around O = (0, 0, r), the point r ahead
of the first camera, always looking at O:

* positive pitch moves the camera up (-y) and so looks down at O;
* positive yaw moves the camera left (-x) and so looks right, at O;
* with r = 0 (or `rotation_only`) the camera stays put and only turns: positive yaw pans right,
  positive pitch tilts down;
* when every resampled angle is exactly 0 (a "dolly zoom" file) the camera moves along its optical
  axis by r instead: positive r moves forward. This overrides `rotation_only`.

r is in DA3 depth units (about metres); the renderer uses the file's values as they are.

Shipped in traj/: upstream's x_y_circle_cycle (three +-20 degree pitch/yaw cycles at r = 1) and
zoom_out_in (dolly out 1 and in 1), plus pan_left / pan_right (15 degree pans, r = 0), tilt_up
(10 degrees, r = 0), orbit_left (20 degree orbit at r = 1) and dolly_in (0.5 forward); for image
scenes (per-frame, 81 frames from the first view's camera; tools/image_trajectories.py):
image_stroll, image_orbit and image_rise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.interpolate import UnivariateSpline, interp1d

SHIPPED_TRAJECTORIES = Path(__file__).resolve().parents[3] / "traj"  # the repository's traj/ folder

MAX_ABS_ANGLE_DEG = 360.0
MAX_ABS_DISTANCE = 1000.0  # r keyframes and per-frame translations, in DA3 units (~metres)
ROTATION_ATOL = 1e-4
MATRIX_NUMBERS = 16
_KEYFRAME_LINES = ("pitch", "yaw", "r")


class TrajectoryError(ValueError):
    """A trajectory file is malformed or out of range; the message names the file and line. `field`: the
    request field that carried it, where the caller knows (refusals.field_of)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class KeyframeTrajectory:
    pitch: tuple[float, ...]
    yaw: tuple[float, ...]
    r: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class PerFrameTrajectory:
    w2c: np.ndarray  # [N, 4, 4] float64, read-only (copy it, e.g. torch.tensor, before handing it to torch)

    def __post_init__(self) -> None:
        w2c = np.array(self.w2c, dtype=np.float64)
        if w2c.ndim != 3 or w2c.shape[1:] != (4, 4):
            raise TrajectoryError(f"per-frame trajectory must be [N, 4, 4], got {w2c.shape}")
        w2c.flags.writeable = False
        object.__setattr__(self, "w2c", w2c)


Trajectory = KeyframeTrajectory | PerFrameTrajectory


def load_trajectory(path: str | Path) -> Trajectory:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TrajectoryError(f"{path}: cannot read trajectory file ({exc})") from exc
    return parse_trajectory(text, source=str(path))


def parse_trajectory(text: str, source: str = "<trajectory>") -> Trajectory:
    rows = _numeric_rows(text, source)
    if not rows:
        raise TrajectoryError(f"{source}: no trajectory lines found")
    has_matrix_line = any(len(values) == MATRIX_NUMBERS for _, values in rows)
    all_matrices = all(len(values) == MATRIX_NUMBERS and values[12:] == (0.0, 0.0, 0.0, 1.0) for _, values in rows)
    if (len(rows) != 3 and has_matrix_line) or (len(rows) == 3 and all_matrices):
        return _per_frame(rows, source)
    if len(rows) != 3:
        raise TrajectoryError(
            f"{source}: expected 3 lines (pitch degrees, yaw degrees, r) or one 4x4 w2c matrix "
            f"(16 numbers) per line, found {len(rows)} lines"
        )
    return _keyframes(rows, source)


def find_trajectory(name: str | Path, search_dirs: Sequence[Path] = ()) -> Path:
    """`name` as a path, else inside `search_dirs`, else among the repository's shipped traj/ files."""
    candidates = [Path(name)] + [Path(d) / name for d in search_dirs] + [SHIPPED_TRAJECTORIES / name]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise TrajectoryError(f"trajectory file {str(name)!r} not found (looked in {[str(p.parent) for p in candidates]})")
    return found


def resample_keyframes(values: Sequence[float], n: int) -> np.ndarray:
    """One keyframe line at n evenly spaced times, float64 [n].

    More than 3 keyframes: a cubic smoothing spline with scipy's default smoothing s = K, so it does
    NOT pass through the keyframes (peaks are attenuated, ends drift). 2-3 keyframes: linear.
    """
    if n < 1:
        raise ValueError(f"frame count must be positive, got {n}")
    times = np.linspace(0.0, 1.0, len(values))
    curve = UnivariateSpline(times, values, k=3) if len(values) > 3 else interp1d(times, values)
    return np.asarray(curve(np.linspace(0.0, 1.0, n)), dtype=np.float64)


def interpolate(traj: KeyframeTrajectory, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame pitch, yaw (degrees) and r, float64 [n]; r's ends are pinned to the raw end keyframes."""
    pitch, yaw, r = (resample_keyframes(line, n) for line in (traj.pitch, traj.yaw, traj.r))
    if len(traj.r) > 3:  # upstream pins only the spline; the angles' ends are left where the spline puts them
        r[0], r[-1] = traj.r[0], traj.r[-1]
    return pitch, yaw, r


def relative_c2w(traj: KeyframeTrajectory, n: int, rotation_only: bool = False, radius: float = 1.0) -> np.ndarray:
    """[n, 4, 4] float64 c2w of each target camera in camera 0's frame (r keyframes scaled by `radius`).

    The renderer uses radius 1 (the file's r as is); the dataset's saved target_extrinsics use the
    frame-0 minimum depth. Scaling happens before resampling because the spline's smoothing is not
    scale invariant.
    """
    scaled = KeyframeTrajectory(traj.pitch, traj.yaw, tuple(v * radius for v in traj.r))
    pitch, yaw, r = interpolate(scaled, n)
    dolly = bool(np.all(pitch == 0) and np.all(yaw == 0))
    # WHY these dtypes: upstream casts angles and r to float32 and evaluates the trig and the
    # translation in float32, but builds the rotation matrices as float64 arrays, so their products
    # are float64.
    pitch32, yaw32, r32 = pitch.astype(np.float32), yaw.astype(np.float32), r.astype(np.float32)
    sx, cx = np.sin(np.deg2rad(pitch32)), np.cos(np.deg2rad(pitch32))
    sy, cy = np.sin(np.deg2rad(yaw32)), np.cos(np.deg2rad(yaw32))
    sx64, cx64, sy64, cy64 = (v.astype(np.float64) for v in (sx, cx, sy, cy))
    zero = np.zeros(n)
    rotation = np.stack([  # Ry(yaw) @ Rx(pitch), written out
        np.stack([cy64, sy64 * -sx64, sy64 * cx64], -1),
        np.stack([zero, cx64, sx64], -1),
        np.stack([-sy64, cy64 * -sx64, cy64 * cx64], -1),
    ], -2)
    if dolly:
        translation = np.stack([zero, zero, r32.astype(np.float64)], -1)
    elif rotation_only:
        translation = np.zeros((n, 3), dtype=np.float32)
    else:  # on the sphere of radius r around O = (0, 0, r)
        translation = np.stack([-r32 * cx * sy, -r32 * sx, r32 - r32 * cx * cy], -1)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = rotation
    c2w[:, :3, 3] = translation
    return c2w


def total_angle(traj: KeyframeTrajectory) -> float:
    """max(sum |delta pitch|, sum |delta yaw|) over the raw keyframes, in degrees."""
    return float(max(np.abs(np.diff(traj.pitch)).sum(), np.abs(np.diff(traj.yaw)).sum()))


def target_c2ws(
    traj: Trajectory, source_c2w: np.ndarray | torch.Tensor, rotation_only: bool, relative_to_source: bool
) -> torch.Tensor:
    """Target camera c2w [N, 4, 4] float32 for the N source cameras (device of `source_c2w`).

    `source_c2w` C_i are the float32 inverses of extrinsic.txt's w2c, whose world frame is DA3's
    normalised to the first camera (C_0 close to, but not exactly, I).

    Keyframes (upstream generate_target_c2ws): Rel_i = `relative_c2w` is taken in camera 0's frame,
    target_i = C_0^-1 Rel_i; with `relative_to_source` it follows the moving source camera,
    target_i = C_0^-1 C_i C_0^-1 Rel_i.

    Per-frame w2c files: target_i = inv(w2c_i), i.e. the cameras are given in that world frame; with
    `relative_to_source` each w2c_i is relative to source camera i instead: target_i = C_i inv(w2c_i).
    `rotation_only` zeroes the translation of inv(w2c_i) (the camera stays at the world origin, or at
    the source camera's centre when relative).
    """
    source = torch.as_tensor(source_c2w).to(torch.float32)
    n = source.shape[0]
    if isinstance(traj, PerFrameTrajectory):
        return _per_frame_targets(traj, source, rotation_only, relative_to_source)
    rel = torch.as_tensor(relative_c2w(traj, n, rotation_only=rotation_only), dtype=torch.float32, device=source.device)
    first_inv = torch.linalg.inv(source[0])
    targets = first_inv @ rel
    if relative_to_source:
        # upstream's order of float32 inverses, kept: inv(inv(A_tgt) @ inv(A_src)) with A_src = C_0^-1 C_i
        targets = torch.linalg.inv(torch.linalg.inv(targets) @ torch.linalg.inv(first_inv @ source))
    return targets


def target_w2cs(
    traj: Trajectory, source_c2w: np.ndarray | torch.Tensor, rotation_only: bool, relative_to_source: bool
) -> torch.Tensor:
    """Target camera w2c [N, 4, 4] float32 (v1.5's renderer takes w2c): a per-frame file's own matrices as
    float32 (upstream v1.5 reads target_tcw.txt so), otherwise the inverses of `target_c2ws`."""
    if isinstance(traj, PerFrameTrajectory) and not (rotation_only or relative_to_source):
        check_camera_count(traj, len(source_c2w))
        return torch.tensor(traj.w2c, dtype=torch.float32, device=torch.as_tensor(source_c2w).device)
    return torch.linalg.inv(target_c2ws(traj, source_c2w, rotation_only, relative_to_source))


def check_camera_count(traj: PerFrameTrajectory, frames: int) -> None:
    if len(traj.w2c) != frames:
        raise TrajectoryError(f"per-frame trajectory has {len(traj.w2c)} cameras for {frames} frames")


def _per_frame_targets(
    traj: PerFrameTrajectory, source: torch.Tensor, rotation_only: bool, relative_to_source: bool
) -> torch.Tensor:
    check_camera_count(traj, len(source))
    c2w = np.linalg.inv(traj.w2c)
    if rotation_only:
        c2w[:, :3, 3] = 0.0
    targets = torch.as_tensor(c2w, dtype=torch.float32, device=source.device)
    return source @ targets if relative_to_source else targets


def _numeric_rows(text: str, source: str) -> list[tuple[int, tuple[float, ...]]]:
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        values = []
        for token in tokens:
            try:
                value = float(token)
            except ValueError:
                raise TrajectoryError(f"{source}:{lineno}: {token!r} is not a number") from None
            if not math.isfinite(value):
                raise TrajectoryError(f"{source}:{lineno}: {token!r} is not a finite number")
            values.append(value)
        rows.append((lineno, tuple(values)))
    return rows


def _keyframes(rows: list[tuple[int, tuple[float, ...]]], source: str) -> KeyframeTrajectory:
    for (lineno, values), name in zip(rows, _KEYFRAME_LINES):
        if len(values) < 2:  # one keyframe cannot be resampled (upstream crashes in interp1d)
            raise TrajectoryError(f"{source}:{lineno}: {name} line needs at least 2 keyframes, got {len(values)}")
        limit = MAX_ABS_DISTANCE if name == "r" else MAX_ABS_ANGLE_DEG
        worst = max(values, key=abs)
        if abs(worst) > limit:
            unit = "" if name == "r" else " degrees"
            raise TrajectoryError(f"{source}:{lineno}: {name} keyframe {worst:g} is outside [-{limit:g}, {limit:g}]{unit}")
    return KeyframeTrajectory(*(values for _, values in rows))


def _per_frame(rows: list[tuple[int, tuple[float, ...]]], source: str) -> PerFrameTrajectory:
    matrices = []
    for lineno, values in rows:
        if len(values) != MATRIX_NUMBERS:
            raise TrajectoryError(f"{source}:{lineno}: expected 16 numbers (a 4x4 w2c matrix), got {len(values)}")
        w2c = np.array(values, dtype=np.float64).reshape(4, 4)
        if not np.allclose(w2c[3], (0, 0, 0, 1), rtol=0, atol=1e-9):
            raise TrajectoryError(f"{source}:{lineno}: last row of the 4x4 must be 0 0 0 1, got {w2c[3].tolist()}")
        rotation = w2c[:3, :3]
        error = np.abs(rotation.T @ rotation - np.eye(3)).max()
        if error > ROTATION_ATOL or np.linalg.det(rotation) <= 0:
            raise TrajectoryError(f"{source}:{lineno}: rotation part is not a proper orthonormal matrix (max |R^T R - I| = {error:.2g})")
        if np.abs(w2c[:3, 3]).max() > MAX_ABS_DISTANCE:
            raise TrajectoryError(f"{source}:{lineno}: translation {w2c[:3, 3].tolist()} exceeds {MAX_ABS_DISTANCE:g} units")
        matrices.append(w2c)
    return PerFrameTrajectory(np.stack(matrices))
