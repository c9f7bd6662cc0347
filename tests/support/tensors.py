"""Small tensor helpers shared by the numerical tests."""

from __future__ import annotations

import torch


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float32."""
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm())


def randn_bf16(g: torch.Generator, *shape: int) -> torch.Tensor:
    """Standard normal bf16 values on the generator's device."""
    return torch.randn(shape, generator=g, device=g.device, dtype=torch.bfloat16)
