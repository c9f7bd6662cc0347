"""FP8 attention (models/fp8_attention.py) on the CPU: the per-token quantization, the torch version
of the kernel's scheme against exact attention, its choice through INSPATIO_ATTENTION, and its own
model identity. The Triton kernel itself is checked on CUDA (tests/gpu/test_fp8_attention.py)."""

from __future__ import annotations

import math

import pytest
import torch

from inspatio_world.jobs.local_stages import generator_identity
from inspatio_world.models import attention
from inspatio_world.models.checkpoints import build_dit, init_random_
from inspatio_world.models.dit import DiTConfig
from inspatio_world.models.fp8_attention import FP8, V_ROW_ALIGN, fp8_attention, quantize_tokens, quantize_values
from inspatio_world.models.fp8_linear import FP8_MAX
from inspatio_world.pipeline.tiny_weights import write_tiny_weights
from tests.support.attention_choice import fresh_attention_choice  # noqa: F401 (fixture)

# Per-token e4m3 operands (3 mantissa bits) on unit-normal inputs: about 3-5% relative L2.
BOUND = 0.07


pytestmark = pytest.mark.usefixtures("fresh_attention_choice")


def _exact(q, k, v):
    weights = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q.double(), k.double()) / math.sqrt(q.shape[-1]), -1)
    return torch.einsum("bhqk,bkhd->bqhd", weights, v.double())


def _relative(a, b) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def test_each_token_and_head_gets_its_own_scale():
    x = torch.randn(2, 5, 3, 16) * torch.logspace(-3, 3, 5)[None, :, None, None]
    x8, scale = quantize_tokens(x)
    assert x8.dtype == FP8 and x8.shape == x.shape and scale.shape == (2, 5, 3)
    assert torch.allclose(x8.float().abs().amax(-1), torch.full((2, 5, 3), FP8_MAX))  # full range per token
    assert _relative(x8.float() * scale[..., None], x) < 2**-4  # e4m3 rounds to 3 mantissa bits


def test_values_are_stored_transposed_with_aligned_rows():
    v = torch.randn(1, 21, 2, 8)
    v8, scale = quantize_values(v)
    reference8, reference_scale = quantize_tokens(v)
    assert v8.shape == v.shape and v8.stride(1) == 1 and v8.stride(3) % V_ROW_ALIGN == 0
    assert torch.equal(v8.float(), reference8.float()) and torch.equal(scale, reference_scale)


@pytest.mark.parametrize("lq,lk", [(1, 1), (37, 200), (64, 129), (130, 300)])
def test_scheme_is_near_exact_attention(lq, lk):
    g = torch.Generator().manual_seed(lq + lk)
    q, k, v = (torch.randn(1, n, 3, 64, generator=g) for n in (lq, lk, lk))
    out = fp8_attention(q, k, v)
    assert out.dtype == q.dtype and out.shape == q.shape
    assert _relative(out, _exact(q, k, v)) < BOUND


def test_values_of_very_different_magnitudes_keep_their_precision():
    """Per-token v scales, P normalized per tile: tokens 1e-4 to 1e3 all count at fp8 precision."""
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, n, 2, 64, generator=g) for n in (50, 300, 300))
    v = v * torch.logspace(-4, 3, 300)[None, :, None, None]
    assert _relative(fp8_attention(q, k, v), _exact(q, k, v)) < BOUND
    small = v[:, :150]  # only the small tokens: still relative precision, not underflow
    assert _relative(fp8_attention(q, k[:, :150], small), _exact(q, k[:, :150], small)) < BOUND


def test_selected_fp8_runs_the_scheme_in_a_dit_pass_and_stays_near_bf16():
    config = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, freq_dim=32, text_len=8)
    dit = init_random_(build_dit(config, torch.float32, "cpu"), seed=1)
    g = torch.Generator().manual_seed(0)
    text = dit.embed_text(torch.randn(1, 8, 32, generator=g))
    x, t = torch.randn(1, 36, 3, 16, 16, generator=g), torch.tensor([500.0])
    outputs = {}
    with torch.no_grad():
        for backend in ("sdpa", "fp8"):
            with attention.backends_overridden(self=backend, cross="sdpa"):
                outputs[backend] = dit(x, t, text)
    assert 0 < _relative(outputs["fp8"], outputs["sdpa"]) < BOUND


def test_fp8_needs_triton_and_an_fp8_gpu(monkeypatch):
    monkeypatch.setattr(attention, "fp8_attention_supported", lambda: False)
    monkeypatch.setenv("INSPATIO_ATTENTION", "fp8")
    with pytest.raises(RuntimeError, match="INSPATIO_ATTENTION=fp8 needs Triton"):
        attention.resolve_backend()
    monkeypatch.setattr(attention, "fp8_attention_supported", lambda: True)
    attention.resolve_backend.cache_clear()
    assert attention.selected_backends()["self"] == "fp8"


def test_fp8_attention_outputs_have_their_own_model_identity(tmp_path, monkeypatch):
    weights = write_tiny_weights(tmp_path / "weights", conditioning=False)
    monkeypatch.setenv("INSPATIO_ATTENTION", "auto")
    plain = generator_identity(weights, ("wan_vae",))
    monkeypatch.setenv("INSPATIO_ATTENTION", "fp8")
    fp8 = generator_identity(weights, ("wan_vae",))
    assert plain.digest != fp8.digest and fp8.name == "generator-fp8-attention"
