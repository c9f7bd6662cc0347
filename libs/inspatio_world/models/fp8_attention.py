"""Optional FP8 (e4m3) self-attention: per-token scales, so the quantization is elementwise.

Scheme (every scale is one token's, one head's; none needs a reduction across tokens, so under the
regional `torch.compile` the quantization fuses into the kernel that made q, k and v):
- q and k: x = x8 * s with s = amax over the head's D values / 448 (`fp8_linear.quantize_rowwise`).
  The kernel forms q8 k8ᵀ on FP8 tensor cores (fp32 accumulation) and multiplies each score by
  s_q[i] s_k[j] / √D before the softmax.
- v: the same per-token scale, folded into the probabilities: Σ_j p_ij v_j = Σ_j (p_ij s_v[j]) v8_j.
  In each tile of keys the kernel quantizes P'_ij = p_ij s_v[j] / max_tile(s_v) (in [0, 1], like
  a plain FP8 P) and multiplies the tile's product by max_tile(s_v): any magnitude of v keeps the
  full e4m3 range and tokens with small v lose only what their smaller share is worth.
The output is bf16 (or the inputs' dtype), [B, L, H, D] like `models/attention.py`.

On CUDA the op runs a Triton kernel (models/fp8_attention_kernel.py); elsewhere the same arithmetic
in plain torch (exact softmax, one tile-max per `REFERENCE_BLOCK_N` keys), which is also the test
reference. This changes the numbers (about 3 mantissa bits per operand): off by default,
`INSPATIO_ATTENTION=fp8` selects it and `inspatio bench generator --fp8-attention` reports its error.
"""

from __future__ import annotations

import importlib.util
import math

import torch

from .fp8_linear import FP8, quantize_rowwise

# Keys per tile whose largest v scale normalizes P in the torch implementation (the kernel's BLOCK_N).
REFERENCE_BLOCK_N = 128
# FP8 v is stored transposed ([B, H, D, L]: the K-major operand the PV product wants on Hopper) with
# its rows padded to a multiple of this many keys, so every row starts 16-byte aligned.
V_ROW_ALIGN = 16


def fp8_attention_supported() -> bool:
    """Triton importable and a CUDA GPU with FP8 tensor cores (sm89+; tuned for sm90)."""
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9):
        return False
    return importlib.util.find_spec("triton") is not None


def quantize_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, L, H, D] -> (FP8 [B, L, H, D], float32 scale [B, L, H]), one scale per token and head."""
    x8, scale = quantize_rowwise(x)
    return x8, scale.squeeze(-1)


def quantize_values(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantize_tokens` for v, the FP8 result a [B, L, H, D] view of [B, H, D, L + pad] storage."""
    length = v.shape[1]
    v8, scale = quantize_tokens(torch.nn.functional.pad(v, (0, 0, 0, 0, 0, -length % V_ROW_ALIGN)))
    return v8.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)[:, :length], scale[:, :length]


@torch.library.custom_op("inspatio::fp8_attention", mutates_args=())
def fp8_attention_quantized(q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, q_scale: torch.Tensor,
                            k_scale: torch.Tensor, v_scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """softmax(q kᵀ / √D) v from per-token FP8 operands (module docstring); [B, L, H, D] in and out."""
    if q8.is_cuda:
        from .fp8_attention_kernel import fp8_attention_forward

        return fp8_attention_forward(q8, k8, v8, q_scale, k_scale, v_scale, out_dtype)
    return fp8_attention_torch(q8, k8, v8, q_scale, k_scale, v_scale).to(out_dtype)


@fp8_attention_quantized.register_fake
def _(q8, k8, v8, q_scale, k_scale, v_scale, out_dtype):
    return torch.empty(q8.shape, dtype=out_dtype, device=q8.device)


def fp8_attention_torch(q8, k8, v8, q_scale, k_scale, v_scale, block_n: int = REFERENCE_BLOCK_N) -> torch.Tensor:
    """The kernel's arithmetic with the whole score matrix at once, in float32."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q8.float(), k8.float())
    scores = scores * q_scale.transpose(1, 2).unsqueeze(-1) * k_scale.transpose(1, 2).unsqueeze(-2) / math.sqrt(q8.shape[-1])
    p = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    v_s = v_scale.transpose(1, 2)  # [B, H, Lk]
    lk = v_s.shape[-1]
    tiles = torch.nn.functional.pad(v_s, (0, -lk % block_n)).unflatten(-1, (-1, block_n)).amax(dim=-1)
    tile_max = tiles.repeat_interleave(block_n, dim=-1)[..., :lk]
    p8 = (p * (v_s / tile_max).unsqueeze(-2)).to(FP8).float()
    out = torch.einsum("bhqk,bkhd->bqhd", p8 * tile_max.unsqueeze(-2), v8.float())
    return out / p.sum(dim=-1).transpose(1, 2).unsqueeze(-1)


def fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Quantize (plain torch: Inductor fuses it into the producers of q, k, v) and attend."""
    (q8, q_scale), (k8, k_scale), (v8, v_scale) = quantize_tokens(q), quantize_tokens(k), quantize_values(v)
    return fp8_attention_quantized(q8, k8, v8, q_scale, k_scale, v_scale, q.dtype)
