"""CUDA only: the feed-forward with its GELU in the GEMM epilogue against the plain path (bf16, the
real FFN size), eager and compiled."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inspatio_world.models.fused_gelu import feed_forward

from tests.support.tensors import randn_bf16, relative_error

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def ffn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1536, 8960), nn.GELU(approximate="tanh"), nn.Linear(8960, 1536)).to("cuda", torch.bfloat16)


def test_fused_gelu_is_within_bf16_rounding_of_the_plain_path(ffn):
    x = randn_bf16(torch.Generator("cuda").manual_seed(1), 1, 4680, 1536)
    with torch.no_grad():
        plain, fused = feed_forward(ffn, x, fused=False), feed_forward(ffn, x, fused=True)
    error = relative_error(fused, plain)
    print(f"fused GELU vs separate, one FFN: relative L2 {error:.2e}")
    assert fused.shape == plain.shape and 0 < error < 1e-2


def test_fused_gelu_survives_compile(ffn):
    x = randn_bf16(torch.Generator("cuda").manual_seed(2), 1, 1560, 1536)
    with torch.no_grad():
        eager = feed_forward(ffn, x, fused=True)
        compiled = torch.compile(feed_forward, fullgraph=True)(ffn, x, True)
    assert relative_error(compiled, eager) < 1e-3
