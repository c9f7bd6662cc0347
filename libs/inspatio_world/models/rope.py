"""3-D rotary position embedding of the Wan DiT, computed exactly as upstream (float64 / complex128).

Each head's D channels form D/2 interleaved (real, imag) pairs, split into temporal, height and
width groups of sizes [c - 2(c//3), c//3, c//3] with c = D/2. Only the temporal position is shifted
by `time_offset` (context passes use 0, denoising passes 6).
"""

from __future__ import annotations

import torch

MAX_POSITIONS = 1024
THETA = 10000.0


def _axis_table(n_positions: int, n_dims: int, device) -> torch.Tensor:
    """complex128 [n_positions, n_dims/2]: exp(i * p * THETA^(-2k/n_dims))."""
    exponents = torch.arange(0, n_dims, 2, dtype=torch.float64, device=device) / n_dims
    # 1 / THETA^e (not THETA^-e): the reciprocal rounds differently and upstream uses it.
    inverse_wavelengths = 1.0 / torch.pow(THETA, exponents)
    angles = torch.outer(torch.arange(n_positions, dtype=torch.float64, device=device), inverse_wavelengths)
    return torch.polar(torch.ones_like(angles), angles)


def axis_pair_counts(head_dim: int) -> tuple[int, int, int]:
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


class RopeTable:
    """Per-axis frequency tables for one head size, built once per device."""

    def __init__(self, head_dim: int, device) -> None:
        t_pairs, h_pairs, w_pairs = axis_pair_counts(head_dim)
        self.time = _axis_table(MAX_POSITIONS, 2 * t_pairs, device)
        self.height = _axis_table(MAX_POSITIONS, 2 * h_pairs, device)
        self.width = _axis_table(MAX_POSITIONS, 2 * w_pairs, device)

    def grid(self, frames: int, height: int, width: int, time_offset: int) -> torch.Tensor:
        """complex128 [frames*height*width, 1, D/2], tokens ordered (f, i, j) row-major."""
        shape = (frames, height, width, -1)
        freqs = torch.cat(
            [
                self.time[time_offset : time_offset + frames].view(frames, 1, 1, -1).expand(shape),
                self.height[:height].view(1, height, 1, -1).expand(shape),
                self.width[:width].view(1, 1, width, -1).expand(shape),
            ],
            dim=-1,
        )
        return freqs.reshape(frames * height * width, 1, -1)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate [B, L, H, D] by complex128 freqs [L, 1, D/2]; the product is taken in float64."""
    b, length, heads, _ = x.shape
    pairs = torch.view_as_complex(x.to(torch.float64).reshape(b, length, heads, -1, 2))
    return torch.view_as_real(pairs * freqs).flatten(3).to(x.dtype)
