"""3-D rotary position embedding of the Wan DiT, in float64 as upstream.

Each head's D channels form D/2 interleaved (real, imag) pairs, split into temporal, height and
width groups of sizes [c - 2(c//3), c//3, c//3] with c = D/2. Only the temporal position is shifted
by `time_offset` (context passes use 0, denoising passes 6).

Eager code multiplies complex128 numbers as upstream does (fewest kernels). Under torch.compile,
which cannot fuse complex arithmetic, the same product is written with real float64 cos/sin
((a+ib)(c+is) = (ac-bs) + i(as+bc)); both round identically once cast back to bf16/fp32 (tested).
"""

from __future__ import annotations

import torch

MAX_POSITIONS = 1024
THETA = 10000.0


def _axis_angles(n_positions: int, n_dims: int, device) -> torch.Tensor:
    """float64 [n_positions, n_dims/2]: p * THETA^(-2k/n_dims)."""
    exponents = torch.arange(0, n_dims, 2, dtype=torch.float64, device=device) / n_dims
    # 1 / THETA^e (not THETA^-e): the reciprocal rounds differently and upstream uses it.
    inverse_wavelengths = 1.0 / torch.pow(THETA, exponents)
    return torch.outer(torch.arange(n_positions, dtype=torch.float64, device=device), inverse_wavelengths)


def axis_pair_counts(head_dim: int) -> tuple[int, int, int]:
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


class RopeTable:
    """Per-axis angle tables for one head size on one device; grids cached per shape."""

    def __init__(self, head_dim: int, device) -> None:
        t_pairs, h_pairs, w_pairs = axis_pair_counts(head_dim)
        self.time = _axis_angles(MAX_POSITIONS, 2 * t_pairs, device)
        self.height = _axis_angles(MAX_POSITIONS, 2 * h_pairs, device)
        self.width = _axis_angles(MAX_POSITIONS, 2 * w_pairs, device)
        self._grids: dict[tuple[int, int, int, int], "RopeGrid"] = {}

    def grid(self, frames: int, height: int, width: int, time_offset: int) -> "RopeGrid":
        """Rotations of the tokens of a (frames, height, width) grid, ordered (f, i, j) row-major."""
        key = (frames, height, width, time_offset)
        if key not in self._grids:
            shape = (frames, height, width, -1)
            angles = torch.cat(
                [
                    self.time[time_offset : time_offset + frames].view(frames, 1, 1, -1).expand(shape),
                    self.height[:height].view(1, height, 1, -1).expand(shape),
                    self.width[:width].view(1, 1, width, -1).expand(shape),
                ],
                dim=-1,
            ).reshape(frames * height * width, 1, -1)
            self._grids[key] = RopeGrid(angles)
        return self._grids[key]


class RopeGrid:
    """Per-token rotations [L, 1, D/2] as complex128 (upstream's polar(1, angle)) and as float64 cos/sin."""

    def __init__(self, angles: torch.Tensor) -> None:
        self.complex = torch.polar(torch.ones_like(angles), angles)
        self.cos, self.sin = self.complex.real.contiguous(), self.complex.imag.contiguous()


def apply_rope(x: torch.Tensor, grid: RopeGrid) -> torch.Tensor:
    """Rotate each interleaved (real, imag) pair of [B, L, H, D] in float64; returns x's dtype."""
    pairs = x.to(torch.float64).unflatten(-1, (-1, 2))
    if torch.compiler.is_compiling():
        real, imag = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack([real * grid.cos - imag * grid.sin, real * grid.sin + imag * grid.cos], dim=-1)
    else:
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * grid.complex)
    return rotated.flatten(-2).to(x.dtype)
