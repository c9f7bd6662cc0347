"""CUDA only: every installed flash kernel against SDPA at this model's attention shapes (bf16), and
the float32 RoPE option against float64, one DiT pass each, within bf16 rounding."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.models.attention import _runs_here, attention, backends_overridden
from inspatio_world.models.checkpoints import build_dit, init_random_
from inspatio_world.models.dit import DiTConfig

from tests.support.tensors import randn_bf16, relative_error

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

DEVICE = "cuda"
# (query tokens, key tokens): a denoising pass over a 6-frame context, a context pass, cross-attention.
SHAPES = [(4680, 14040), (9360, 9360), (4680, 512)]
KERNELS = [name for name in ("flash2", "flash3", "flash4") if torch.cuda.is_available() and _runs_here(name)]


@pytest.mark.parametrize("backend", KERNELS or [pytest.param("none", marks=pytest.mark.skip("no flash kernel installed"))])
@pytest.mark.parametrize("lq,lk", SHAPES)
def test_flash_kernel_matches_sdpa(backend, lq, lk):
    g = torch.Generator(DEVICE).manual_seed(lq + lk)
    q, k, v = randn_bf16(g, 1, lq, 12, 128), randn_bf16(g, 1, lk, 12, 128), randn_bf16(g, 1, lk, 12, 128)
    with backends_overridden(self="sdpa"):
        reference = attention(q, k, v)
    with backends_overridden(self=backend):
        fast = attention(q, k, v)
    error = relative_error(fast, reference)
    print(f"{backend} vs sdpa at {lq}x{lk}: relative L2 {error:.2e}")
    assert fast.shape == reference.shape and error < 1e-2


@pytest.mark.parametrize("backend", KERNELS or [pytest.param("none", marks=pytest.mark.skip("no flash kernel installed"))])
def test_flash_kernel_under_compile(backend):
    """The custom op keeps the kernel opaque to torch.compile: same result as eager, no graph break."""
    g = torch.Generator(DEVICE).manual_seed(5)
    q, k, v = (randn_bf16(g, 1, 1560, 12, 128) for _ in range(3))
    with backends_overridden(self=backend):
        eager = attention(q, k, v)
        compiled = torch.compile(attention, fullgraph=True)(q, k, v)
    assert torch.equal(compiled, eager)


def test_float32_rope_pass_is_within_bf16_rounding_of_float64():
    config = DiTConfig(num_layers=2)
    model = init_random_(build_dit(config, torch.bfloat16, DEVICE), seed=3)
    g = torch.Generator(DEVICE).manual_seed(0)
    text, x = model.embed_text(randn_bf16(g, 1, 512, 4096)), randn_bf16(g, 1, 36, 3, 60, 104)
    t = torch.tensor([937.5], device=DEVICE)
    outputs = []
    with torch.no_grad():
        for precision in (torch.float64, torch.float32):
            model.use_rope_precision(precision)
            outputs.append(model(x, t, text, time_offset=6))
    error = relative_error(outputs[1], outputs[0])
    print(f"float32 RoPE vs float64, one pass: relative L2 {error:.2e}")
    assert error < 5e-3
