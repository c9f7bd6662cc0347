"""The fused-GELU feed-forward falls back to the plain path wherever cuBLASLt's epilogue is not used."""

from __future__ import annotations

import torch
from torch import nn

from inspatio_world.models.fused_gelu import feed_forward


def test_fused_gelu_leaves_cpu_tensors_on_the_plain_path():
    ffn = nn.Sequential(nn.Linear(8, 16), nn.GELU(approximate="tanh"), nn.Linear(16, 8))
    x = torch.randn(2, 3, 8)
    assert torch.equal(feed_forward(ffn, x, fused=True), ffn(x))
