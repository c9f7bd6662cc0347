"""Optional FP8 (e4m3) linear layers for the DiT's transformer blocks (Hopper and newer).

Weights are quantized once, per output channel; activations per token at every call (row-wise
scales, what `torch._scaled_mm` accepts on sm90). Products accumulate in fp32 and come out in bf16.
Under the regional `torch.compile`, the activation's amax and cast fuse into the kernel that made
the activation, so the cost beyond the FP8 GEMM is one extra read of it.

This changes the numbers (FP8 keeps 3 mantissa bits): it is off by default, and `inspatio bench
generator --fp8` reports its error against the bf16 path.
"""

from __future__ import annotations

import torch
from torch import nn

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max
# Scales never reach zero: an all-zero row would otherwise divide 0 by 0.
MIN_AMAX = 1e-12


def fp8_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_rowwise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., K] -> (FP8 [..., K], float32 scale [..., 1]) with x ~= q * scale: one scale per row of the last dim."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=MIN_AMAX)
    scale = amax / FP8_MAX
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


class Fp8Linear(nn.Module):
    """y = x W^T + b with W and x in FP8, from an existing bf16 `nn.Linear`."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight, scale = quantize_rowwise(linear.weight.detach())
        # _scaled_mm wants its second operand column-major: W^T as a transposed view of row-major W.
        self.register_buffer("weight_t", weight.t(), persistent=False)
        self.register_buffer("weight_scale", scale.t().contiguous(), persistent=False)  # [1, N]
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.out_dtype = linear.weight.dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        q, scale = quantize_rowwise(rows)
        y = torch._scaled_mm(q, self.weight_t, scale_a=scale, scale_b=self.weight_scale, out_dtype=self.out_dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)


def quantize_blocks_fp8(blocks: nn.ModuleList) -> int:
    """Replace every `nn.Linear` inside the transformer blocks with `Fp8Linear`, in place.

    Only the blocks: the embeddings and the head are a sliver of the FLOPs and feed the sampler's
    arithmetic directly. Returns the number of layers replaced.
    """
    replaced = 0
    for block in blocks:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Fp8Linear(child))
                    replaced += 1
    return replaced
