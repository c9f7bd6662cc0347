"""FP8 linear layers (models/fp8_linear.py) on the CPU: the layer computes exactly the product of its
dequantized operands, quantization follows e4m3's range, and only the blocks' layers are replaced."""

from __future__ import annotations

import torch
from torch import nn

from inspatio_world.models.checkpoints import build_dit, init_random_
from inspatio_world.models.dit import DiTConfig
from inspatio_world.models.fp8_linear import FP8, FP8_MAX, Fp8Linear, quantize_rowwise

TINY = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, freq_dim=32, text_len=8)


def _linear(seed: int, k: int = 96, n: int = 80) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n).to(torch.bfloat16)


def test_rowwise_quantization_uses_the_whole_e4m3_range_per_row():
    x = torch.randn(5, 64) * torch.tensor([1e-3, 1.0, 30.0, 1e3, 0.0]).unsqueeze(1)
    q, scale = quantize_rowwise(x)
    assert q.dtype == FP8 and scale.shape == (5, 1)
    amax = q.float().abs().amax(dim=1)
    assert torch.allclose(amax[:4], torch.full((4,), FP8_MAX))  # each row's largest value maps to 448
    assert amax[4] == 0 and torch.isfinite(scale).all()  # an all-zero row stays zero, no NaN
    relative = ((q.float() * scale - x).norm(dim=1) / x.norm(dim=1))[:4]
    assert (relative < 0.05).all(), relative  # 3 mantissa bits: a few percent


def test_layer_equals_the_product_of_its_dequantized_operands():
    linear = _linear(0)
    layer = Fp8Linear(linear)
    x = torch.randn(2, 7, 96, dtype=torch.bfloat16)
    qx, sx = quantize_rowwise(x.reshape(-1, 96))
    expected = (qx.float() * sx) @ (layer.weight_t.float() * layer.weight_scale) + linear.bias.float()
    got = layer(x)
    assert got.shape == (2, 7, 80) and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float().reshape(-1, 80), expected, rtol=1e-2, atol=1e-2)
    # ... and is close to, but not, the bf16 layer
    with torch.no_grad():
        reference = linear(x).float()
    error = float((got.float() - reference).norm() / reference.norm())
    assert 1e-3 < error < 0.06, error


def test_only_the_blocks_linear_layers_are_replaced():
    dit = init_random_(build_dit(TINY, torch.bfloat16, "cpu"))
    dit.use_fp8_linears()
    in_blocks = [m for m in dit.blocks.modules() if isinstance(m, (nn.Linear, Fp8Linear))]
    assert in_blocks and all(isinstance(m, Fp8Linear) for m in in_blocks)
    assert len(in_blocks) == TINY.num_layers * 10  # q k v o twice, two FFN layers
    outside = [m for name, m in dit.named_modules() if not name.startswith("blocks") and isinstance(m, Fp8Linear)]
    assert outside == []
