"""3-D RoPE: positions/frequencies as the spec, and the compiled (real cos/sin) path equal to eager (complex)."""

from __future__ import annotations

import math

import pytest
import torch

from inspatio_world.models.rope import RopeTable, apply_rope, axis_pair_counts, configured_precision


def test_axis_split_of_the_real_head_size():
    assert axis_pair_counts(128) == (22, 21, 21)


def test_rotation_of_one_token_follows_the_formula():
    table = RopeTable(128, "cpu")
    frames, height, width, offset = 3, 4, 5, 6
    grid = table.grid(frames, height, width, offset)
    x = torch.randn(1, frames * height * width, 1, 128, dtype=torch.float64)
    out = apply_rope(x, grid)
    f, i, j = 2, 3, 1
    token = (f * height + i) * width + j
    pair = 22 + 21 + 5  # 6th width pair: angle = j * 10000^(-2*5/42)
    angle = j * 10000 ** (-2 * 5 / 42)
    a, b = x[0, token, 0, 2 * pair], x[0, token, 0, 2 * pair + 1]
    expected = (a * math.cos(angle) - b * math.sin(angle), a * math.sin(angle) + b * math.cos(angle))
    assert torch.allclose(out[0, token, 0, 2 * pair : 2 * pair + 2], torch.tensor(expected, dtype=torch.float64))
    time_angle = (offset + f) * 10000 ** (-2 * 3 / 44)  # 4th temporal pair, shifted by the offset
    a, b = x[0, token, 0, 6], x[0, token, 0, 7]
    assert torch.allclose(out[0, token, 0, 6], a * math.cos(time_angle) - b * math.sin(time_angle))


def test_compiled_real_arithmetic_equals_eager_complex_in_bf16():
    grid = RopeTable(128, "cpu").grid(3, 30, 52, 6)
    x = torch.randn(1, 3 * 30 * 52, 12, 128).to(torch.bfloat16)
    traced = torch.compile(apply_rope, backend="eager", fullgraph=True)  # runs the is_compiling() branch
    assert torch.equal(traced(x, grid), apply_rope(x, grid))


def test_precision_auto_keeps_float64_on_the_cpu_and_float32_elsewhere(monkeypatch):
    monkeypatch.setenv("INSPATIO_ROPE_PRECISION", "auto")
    assert configured_precision(torch.device("cpu")) == torch.float64
    assert configured_precision(torch.device("cuda")) == torch.float32
    monkeypatch.setenv("INSPATIO_ROPE_PRECISION", "float32")
    assert configured_precision(torch.device("cpu")) == torch.float32
    monkeypatch.setenv("INSPATIO_ROPE_PRECISION", "half")
    with pytest.raises(ValueError, match="INSPATIO_ROPE_PRECISION='half'"):
        configured_precision(torch.device("cpu"))


def test_float32_rotation_stays_within_float32_rounding_of_float64():
    x = torch.randn(1, 3 * 30 * 52, 12, 128, dtype=torch.float64)
    exact = apply_rope(x, RopeTable(128, "cpu").grid(3, 30, 52, 6))
    fast = apply_rope(x, RopeTable(128, "cpu", torch.float32).grid(3, 30, 52, 6))
    assert fast.dtype == torch.float64
    assert 0 < (fast - exact).abs().max() < 1e-5


def test_model_rope_precision_follows_the_setting(monkeypatch):
    from inspatio_world.models.dit import CausalDiT, DiTConfig

    model = CausalDiT(DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=1, text_dim=32, text_len=8))
    assert model.rope_table(torch.device("cpu")).precision == torch.float64
    model.use_rope_precision(torch.float32)
    assert model.rope_table(torch.device("cpu")).precision == torch.float32
