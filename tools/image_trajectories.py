"""Write the example camera paths for image scenes (traj/image_*.txt): per-frame world-to-camera.

    python tools/image_trajectories.py traj

World = the first view's camera (DA3 normalises to it; OpenCV axes: x right, y down, z forward;
units ~metres). Every path starts at the first view's camera (frame 0 = identity, fully covered)
and has 81 frames: 1 + 4 * 20, i.e. 21 latents = 7 whole blocks, so a four-view job needs no padding.

* image_stroll: walk 0.6 forward with a slight sway (x +-0.05), bob (y +-0.02) and look-around (yaw +-5 deg);
* image_orbit:  orbit +-20 deg around the point 1 ahead, always looking at it (there and back);
* image_rise:   rise 0.4 (crane up, -y) while easing 0.1 forward, looking at the point 2 ahead (tilts down).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

FRAMES = 81


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """c2w of a camera at `centre` looking at `target`, no roll (OpenCV axes, world y down)."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    c2w[:3, 3] = centre
    return c2w


def stroll(t: float) -> np.ndarray:
    centre = np.array([0.05 * np.sin(2 * np.pi * t), 0.02 * np.sin(4 * np.pi * t), 0.6 * t])
    yaw = np.radians(5.0) * np.sin(2 * np.pi * t)
    return look_at(centre, centre + np.array([np.sin(yaw), 0.0, np.cos(yaw)]))


def orbit(t: float) -> np.ndarray:
    angle, pivot = np.radians(20.0) * np.sin(2 * np.pi * t), np.array([0.0, 0.0, 1.0])
    return look_at(pivot + np.array([-np.sin(angle), 0.0, -np.cos(angle)]), pivot)


def rise(t: float) -> np.ndarray:
    ease = 0.5 - 0.5 * np.cos(np.pi * t)
    return look_at(np.array([0.0, -0.4 * ease, 0.1 * ease]), np.array([0.0, 0.0, 2.0]))


PATHS = {"image_stroll": stroll, "image_orbit": orbit, "image_rise": rise}


def write(folder: Path) -> None:
    for name, path in PATHS.items():
        lines = [f"# {name}: per-frame world-to-camera 4x4 (row-major), one line per frame; made by tools/image_trajectories.py"]
        lines += ["# " + line for line in __doc__.splitlines() if line.startswith(f"* {name}")]
        for t in np.linspace(0.0, 1.0, FRAMES):
            w2c = np.linalg.inv(path(t))
            w2c[3] = (0, 0, 0, 1)
            lines.append(" ".join(f"{v:.9g}" for v in np.where(np.abs(w2c) < 1e-12, 0.0, w2c).ravel()))
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    write(Path(sys.argv[1]))
