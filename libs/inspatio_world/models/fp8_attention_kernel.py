"""Triton forward kernel of the FP8 attention (scheme in models/fp8_attention.py); CUDA, sm89+.

Flash-attention order: one program per (BLOCK_M queries, batch·head). Its q tile is loaded once;
key/value tiles stream through an online softmax (running max m, running sum l, rescaled
accumulator). Both products run on FP8 tensor cores with fp32 accumulation; P stays in registers.
Scores are in log2 units (exp2), with log2(e)/√D folded into the query scales; a row's (positive)
query scale leaves the row max unchanged, so it is applied inside the exponent's one FMA.

The accumulator is kept in units of the current tile's largest v scale c (the value scale of the
module docstring), so each tile's P'V adds into it with tl.dot's own accumulation:
acc_true = c · acc, and moving to a tile with scale c' rescales acc by α·c/c' (α: the softmax's
correction), the one multiply per element an online softmax needs anyway.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

# Tile configurations tried per shape (key: lengths, head dim). Measured on an H200: 64 queries x
# 128 keys in one warpgroup (4 warps, 3 stages) was fastest at both model shapes; 128 x 128 tiles
# spill the fp32 score and probability tiles to local memory and ran 2-3x slower.
CONFIGS = [
    triton.Config({"BLOCK_M": block_m, "BLOCK_N": block_n}, num_warps=warps, num_stages=stages)
    for block_m, block_n, warps, stages in ((64, 128, 4, 2), (64, 128, 4, 3), (64, 128, 4, 4), (64, 64, 4, 3),
                                            (128, 64, 8, 3), (128, 64, 8, 4))  # fmt: skip
]


@triton.jit
def _tile(acc, m_i, l_i, c_i, q, q_scale, start, k_ptrs, ks_ptrs, v_ptrs, vs_ptrs, stride_kl, stride_ksl, stride_vl,
          stride_vsl, LK, BLOCK_N: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    offs_n = start + tl.arange(0, BLOCK_N)
    if MASKED:
        inside = offs_n < LK
        k = tl.load(k_ptrs + start * stride_kl, mask=inside[None, :], other=0.0)
        k_scale = tl.load(ks_ptrs + start * stride_ksl, mask=inside, other=0.0)
        v = tl.load(v_ptrs + start * stride_vl, mask=inside[:, None], other=0.0)
        v_scale = tl.load(vs_ptrs + start * stride_vsl, mask=inside, other=0.0)
    else:
        k = tl.load(k_ptrs + start * stride_kl)
        k_scale = tl.load(ks_ptrs + start * stride_ksl)
        v = tl.load(v_ptrs + start * stride_vl)
        v_scale = tl.load(vs_ptrs + start * stride_vsl)
    # t = scores / q_scale: the row's positive q scale moves into the exponent's one FMA.
    t = tl.dot(q, k) * k_scale[None, :]
    if MASKED:
        t = tl.where(inside[None, :], t, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(t, 1))
    alpha = tl.exp2((m_i - m_new) * q_scale)
    p = tl.exp2(t * q_scale[:, None] - (m_new * q_scale)[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    c_new = tl.max(v_scale, 0)
    p8 = (p * (v_scale / c_new)[None, :]).to(v.dtype)
    acc = acc * (alpha * (c_i / c_new))[:, None]
    acc = tl.dot(p8, v, acc)
    return acc, m_new, l_i, c_new


@triton.autotune(configs=CONFIGS, key=["LQ", "LK", "HEAD_DIM"])
@triton.jit
def _fp8_attention_kernel(
    Q, K, V, QS, KS, VS, O,
    stride_qb, stride_ql, stride_qh,
    stride_kb, stride_kl, stride_kh,
    stride_vb, stride_vl, stride_vh, stride_vd,
    stride_qsb, stride_qsl, stride_qsh,
    stride_ksb, stride_ksl, stride_ksh,
    stride_vsb, stride_vsl, stride_vsh,
    stride_ob, stride_ol, stride_oh,
    H, LQ, LK, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    b = tl.program_id(1) // H
    h = tl.program_id(1) % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    rows = offs_m < LQ

    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_ql + offs_d[None, :], mask=rows[:, None], other=0.0)
    q_scale = tl.load(QS + b * stride_qsb + h * stride_qsh + offs_m * stride_qsl, mask=rows, other=1.0) * qk_scale
    # k as [D, BLOCK_N] (contiguous along D: the K-major operand FP8 wgmma wants), v as [BLOCK_N, D].
    k_ptrs = K + b * stride_kb + h * stride_kh + offs_n[None, :] * stride_kl + offs_d[:, None]
    v_ptrs = V + b * stride_vb + h * stride_vh + offs_n[:, None] * stride_vl + offs_d[None, :] * stride_vd
    ks_ptrs = KS + b * stride_ksb + h * stride_ksh + offs_n * stride_ksl
    vs_ptrs = VS + b * stride_vsb + h * stride_vsh + offs_n * stride_vsl

    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    c_i = tl.full([], 1.0, dtype=tl.float32)
    full = (LK // BLOCK_N) * BLOCK_N
    for start in range(0, full, BLOCK_N):
        acc, m_i, l_i, c_i = _tile(acc, m_i, l_i, c_i, q, q_scale, start, k_ptrs, ks_ptrs, v_ptrs, vs_ptrs, stride_kl,
                                   stride_ksl, stride_vl, stride_vsl, LK, BLOCK_N, False)  # fmt: skip
    if full < LK:
        acc, m_i, l_i, c_i = _tile(acc, m_i, l_i, c_i, q, q_scale, full, k_ptrs, ks_ptrs, v_ptrs, vs_ptrs, stride_kl,
                                   stride_ksl, stride_vl, stride_vsl, LK, BLOCK_N, True)  # fmt: skip
    out = acc * (c_i / l_i)[:, None]
    o_ptrs = O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_ol + offs_d[None, :]
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=rows[:, None])


def fp8_attention_forward(q8: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, q_scale: torch.Tensor, k_scale: torch.Tensor,
                          v_scale: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """[B, L, H, D] FP8 operands (D contiguous for q, k; v any strides) and [B, L, H] float32 scales."""
    batch, lq, heads, dim = q8.shape
    lk = k8.shape[1]
    if q8.stride(-1) != 1 or k8.stride(-1) != 1:
        raise ValueError("fp8 attention: q and k need a contiguous head dim")
    out = torch.empty(q8.shape, dtype=out_dtype, device=q8.device)
    grid = lambda meta: (triton.cdiv(lq, meta["BLOCK_M"]), batch * heads)  # noqa: E731
    _fp8_attention_kernel[grid](
        q8, k8, v8, q_scale, k_scale, v_scale, out,
        q8.stride(0), q8.stride(1), q8.stride(2),
        k8.stride(0), k8.stride(1), k8.stride(2),
        v8.stride(0), v8.stride(1), v8.stride(2), v8.stride(3),
        q_scale.stride(0), q_scale.stride(1), q_scale.stride(2),
        k_scale.stride(0), k_scale.stride(1), k_scale.stride(2),
        v_scale.stride(0), v_scale.stride(1), v_scale.stride(2),
        out.stride(0), out.stride(1), out.stride(2),
        heads, lq, lk, math.log2(math.e) / math.sqrt(dim),
        HEAD_DIM=dim,
    )  # fmt: skip
    return out
