"""The DiT feed-forward's first linear layer with its tanh-GELU computed in the GEMM's epilogue.

cuBLASLt applies the GELU to the fp32 accumulator before the one rounding to bf16, so the 8960-wide
hidden activation is written once instead of written, read back and written again by a separate
elementwise kernel; the values differ from the plain path (a rounded linear output, then GELU) by
that rounding (README, Performance). CUDA half precision only; everything else takes the plain path.
A `torch.library` custom op, so that torch.compile neither decomposes it back into a GEMM plus a
Triton GELU nor traces into it.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.library.custom_op("inspatio::linear_gelu", mutates_args=())
def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(x Wᵀ + b) for x [M, K], W [N, K], b [N] -> [M, N]."""
    return torch._addmm_activation(bias, x, weight.t(), use_gelu=True)


@linear_gelu.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[0])


def feed_forward(ffn: nn.Sequential, x: torch.Tensor, fused: bool) -> torch.Tensor:
    """`ffn` = (Linear, GELU(tanh), Linear) on [B, L, C]; `fused` puts the GELU in the first GEMM."""
    first, _, second = ffn
    if not (fused and x.is_cuda and x.dtype in (torch.bfloat16, torch.float16) and isinstance(first, nn.Linear)):
        return ffn(x)
    hidden = linear_gelu(x.reshape(-1, x.shape[-1]), first.weight, first.bias)
    return second(hidden.view(*x.shape[:-1], -1))
