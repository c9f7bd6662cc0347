"""CUDA only: the Triton FP8 attention kernel (models/fp8_attention_kernel.py) against SDPA at this
model's shapes and at lengths that are not a multiple of any tile, and against the torch version of
the same scheme; under torch.compile the op stays opaque and gives the eager result."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.models.attention import attention, backends_overridden
from inspatio_world.models.fp8_attention import fp8_attention_torch, fp8_attention_supported, quantize_tokens, quantize_values

from tests.support.tensors import randn_bf16, relative_error

pytestmark = pytest.mark.skipif(not fp8_attention_supported(), reason="needs Triton and a CUDA GPU with FP8 (sm89+)")

DEVICE = "cuda"
# Per-token e4m3 operands on unit-normal inputs: about 3-4% relative L2 from exact attention.
SDPA_BOUND = 0.06


def _qkv(lq: int, lk: int, heads: int = 12, dim: int = 128):
    g = torch.Generator(DEVICE).manual_seed(lq * 7 + lk)
    return randn_bf16(g, 1, lq, heads, dim), randn_bf16(g, 1, lk, heads, dim), randn_bf16(g, 1, lk, heads, dim)


def _both(q, k, v):
    with backends_overridden(self="sdpa"):
        reference = attention(q, k, v)
    with backends_overridden(self="fp8"):
        return attention(q, k, v), reference


@pytest.mark.parametrize("lq,lk", [(4680, 14040), (9360, 9360), (4680, 512), (1, 1), (77, 1000), (300, 131), (129, 4097)])
def test_fp8_kernel_matches_sdpa(lq, lk):
    fp8, reference = _both(*_qkv(lq, lk))
    error = relative_error(fp8, reference)
    print(f"fp8 vs sdpa at {lq}x{lk}: relative L2 {error:.2e}")
    assert fp8.shape == reference.shape and fp8.dtype == torch.bfloat16 and error < SDPA_BOUND


def test_fp8_kernel_is_as_accurate_as_the_torch_version_of_its_scheme():
    """Same operands and arithmetic; P is rounded at another scale (running vs final row max), so the
    two differ by about that rounding, and neither is further from exact attention than the other."""
    q, k, v = _qkv(333, 1000)
    (q8, qs), (k8, ks), (v8, vs) = quantize_tokens(q), quantize_tokens(k), quantize_values(v)
    kernel = torch.ops.inspatio.fp8_attention(q8, k8, v8, qs, ks, vs, torch.float32)
    scheme = fp8_attention_torch(q8, k8, v8, qs, ks, vs)
    exact = torch.nn.functional.scaled_dot_product_attention(*(x.float().transpose(1, 2) for x in (q, k, v))).transpose(1, 2)
    print(f"kernel vs torch scheme {relative_error(kernel, scheme):.2e}; from exact: kernel "
          f"{relative_error(kernel, exact):.2e}, scheme {relative_error(scheme, exact):.2e}")
    assert relative_error(kernel, scheme) < 0.04
    assert relative_error(kernel, exact) < 1.1 * relative_error(scheme, exact)


def test_values_of_any_magnitude_keep_their_precision():
    """v scaled by 1e-4 and 1e3 per token: the per-token v scales keep every token's share exact to fp8."""
    q, k, v = _qkv(256, 700)
    ramp = torch.logspace(-4, 3, 700, device=DEVICE, dtype=torch.float32).to(torch.bfloat16)
    fp8, reference = _both(q, k, v * ramp[None, :, None, None])
    assert relative_error(fp8, reference) < SDPA_BOUND


def test_fp8_attention_under_compile_is_the_eager_result():
    q, k, v = _qkv(1560, 1560)
    with backends_overridden(self="fp8"):
        eager = attention(q, k, v)
        compiled = torch.compile(attention, fullgraph=True)(q, k, v)
    assert torch.equal(compiled, eager)
