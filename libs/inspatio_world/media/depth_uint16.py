"""v1.5's depth storage: upstream v1.5 keeps a video's depth as linear uint16 (one min/max per video,
stored as text with 9 significant digits) and renders from the decoded values, not from the float
maps DA3 produced (upstream datasets/scene_depth_io.py encode_depth / decode_depth / write_range).

`uint16_round_trip` gives the depths the renderer sees: encoded with the exact float32 min/max of the
finite values, decoded with the min/max as read back from their text form.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_UINT16 = (1 << 16) - 1


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """(min, max) over the finite values; ValueError when there is none."""
    finite = depth[np.isfinite(depth)]
    if finite.size == 0:
        raise ValueError("no finite depth values")
    return float(finite.min()), float(finite.max())


def encode(depth: np.ndarray, minimum: float, maximum: float) -> np.ndarray:
    """float depth -> uint16, linear between `minimum` and `maximum` (clipped, rounded half to even)."""
    values = np.asarray(depth, dtype=np.float32)
    if maximum <= minimum:
        return np.zeros(values.shape, dtype=np.uint16)
    normalized = np.clip((values.astype(np.float64) - minimum) / (maximum - minimum), 0, 1)
    return np.rint(normalized * MAX_UINT16).astype(np.uint16)


def decode(quantized: np.ndarray, minimum: float, maximum: float) -> np.ndarray:
    """uint16 -> float32 depth."""
    return (minimum + quantized.astype(np.float64) / MAX_UINT16 * (maximum - minimum)).astype(np.float32)


def as_stored(value: float) -> float:
    """`value` as read back from upstream's metadata.txt (`%.9g`)."""
    return float(f"{value:.9g}")


def uint16_round_trip(depth: torch.Tensor) -> torch.Tensor:
    """[N, H, W] float depth -> the float32 depth upstream v1.5 renders from (same device)."""
    values = depth.detach().to("cpu", torch.float32).numpy()
    minimum, maximum = depth_range(values)
    decoded = decode(encode(values, minimum, maximum), as_stored(minimum), as_stored(maximum))
    return torch.from_numpy(decoded).to(depth.device)
