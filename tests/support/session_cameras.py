"""Cameras of an offline job that a live session is given too (the same-numbers tests)."""

from __future__ import annotations

import numpy as np


def job_cameras(n: int = 57) -> np.ndarray:
    """w2c [n, 4, 4]: the camera turns right 0.3 degrees a frame while it moves right and forward."""
    out = np.empty((n, 4, 4))
    for i in range(n):
        angle = np.radians(0.3 * i)
        c2w = np.eye(4)
        c2w[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
        c2w[:3, 3] = [0.004 * i, 0.0, 0.006 * i]
        out[i] = np.linalg.inv(c2w)
    return out
