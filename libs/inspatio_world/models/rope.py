"""3-D rotary position embedding of the Wan DiT, in float64 as upstream.

Each head's D channels form D/2 interleaved (real, imag) pairs, split into temporal, height and
width groups of sizes [c - 2(c//3), c//3, c//3] with c = D/2. Only the temporal position is shifted
by `time_offset` (context passes use 0, denoising passes 6).

Eager code multiplies complex128 numbers as upstream does (fewest kernels). Under torch.compile,
which cannot fuse complex arithmetic, the same product is written with real float64 cos/sin
((a+ib)(c+is) = (ac-bs) + i(as+bc)); both round identically once cast back to bf16/fp32 (tested).

On GPUs by default (INSPATIO_ROPE_PRECISION=auto; float32 anywhere) the rotation runs in float32
with cos/sin rounded once per grid: half the table traffic and no float64 arithmetic; it moves bf16
outputs by an ulp here and there (its error per block is measured by `inspatio bench generator`
and in the README). The CPU keeps float64, upstream's numbers, which the parity tests hold.
"""

from __future__ import annotations

import torch

from .. import envvars

PRECISIONS = {"float64": torch.float64, "float32": torch.float32}
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


def configured_precision(device: torch.device) -> torch.dtype:
    """$INSPATIO_ROPE_PRECISION as a dtype for tensors on `device`."""
    name = envvars.get(envvars.ROPE_PRECISION)
    if name == "auto":
        return torch.float64 if device.type == "cpu" else torch.float32
    if name not in PRECISIONS:
        raise ValueError(f"{envvars.ROPE_PRECISION.name}={name!r}: expected auto or one of {sorted(PRECISIONS)}")
    return PRECISIONS[name]


class RopeTable:
    """Per-axis angle tables for one head size on one device; grids cached per shape.

    Angles are always float64 (upstream's); `precision` is the dtype the rotation runs in.
    """

    def __init__(self, head_dim: int, device, precision: torch.dtype = torch.float64) -> None:
        self.precision = precision
        t_pairs, h_pairs, w_pairs = axis_pair_counts(head_dim)
        self.time = _axis_angles(MAX_POSITIONS, 2 * t_pairs, device)
        self.height = _axis_angles(MAX_POSITIONS, 2 * h_pairs, device)
        self.width = _axis_angles(MAX_POSITIONS, 2 * w_pairs, device)
        self._grids: dict[tuple, "RopeGrid"] = {}

    def grid(self, frames: int, height: int, width: int, time_offset: int, rows: slice = slice(None)) -> "RopeGrid":
        """Rotations of the tokens of a (frames, height, width) grid, ordered (f, i, j) row-major;
        only the token `rows` (a sequence-parallel rank's share)."""
        key = (frames, height, width, time_offset, rows.start, rows.stop)
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
            self._grids[key] = RopeGrid(angles[rows], self.precision)
        return self._grids[key]


class RopeGrid:
    """Per-token rotations [L, 1, D/2] as complex128 (upstream's polar(1, angle)) and as cos/sin in
    the rotation's precision (rounded from the float64 values)."""

    def __init__(self, angles: torch.Tensor, precision: torch.dtype = torch.float64) -> None:
        self.complex = torch.polar(torch.ones_like(angles), angles)
        self.cos = self.complex.real.to(precision).contiguous()
        self.sin = self.complex.imag.to(precision).contiguous()


def apply_rope(x: torch.Tensor, grid: RopeGrid) -> torch.Tensor:
    """Rotate each interleaved (real, imag) pair of [B, L, H, D] in the grid's precision; returns x's dtype."""
    pairs = x.to(grid.cos.dtype).unflatten(-1, (-1, 2))
    if torch.compiler.is_compiling() or grid.cos.dtype != torch.float64:
        real, imag = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack([real * grid.cos - imag * grid.sin, real * grid.sin + imag * grid.cos], dim=-1)
    else:
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * grid.complex)
    return rotated.flatten(-2).to(x.dtype)
