"""CUDA only: an offloaded text encoder gives the same embeddings and leaves no weights on the GPU."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.models.checkpoints import init_random_
from inspatio_world.models.text_encoder import TextEncoder, TextEncoderConfig, build_encoder_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CONFIG = TextEncoderConfig(vocab_size=64, dim=64, dim_attn=64, dim_ffn=128, num_heads=4, encoder_layers=2, text_len=16)


def test_offloaded_encoder_matches_resident_one():
    model = init_random_(build_encoder_model(CONFIG, torch.bfloat16, "cuda"), seed=2)
    ids = torch.randint(3, 64, (1, 16))
    mask = torch.ones(1, 16, dtype=torch.long)
    resident = TextEncoder(model, CONFIG).encode_ids(ids, mask)
    offloaded = TextEncoder(model, CONFIG, offload=True)
    assert all(p.device.type == "cpu" and p.is_pinned() for p in model.parameters())
    assert torch.equal(offloaded.encode_ids(ids, mask), resident)
    assert all(p.device.type == "cpu" for p in model.parameters())
