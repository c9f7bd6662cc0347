"""Per-frame camera paths (one 4x4 world-to-camera matrix per line) for tests: v1.5's trajectory format."""

from __future__ import annotations

import numpy as np


def sideways_path(frames: int, step: float = 0.01) -> str:
    """The camera moves `step` units to the right per frame, looking ahead (w2c translation -x)."""
    lines = []
    for i in range(frames):
        w2c = np.eye(4)
        w2c[0, 3] = -step * i
        lines.append(" ".join(f"{v:.9g}" for v in w2c.ravel()))
    return "\n".join(lines) + "\n"
