"""The `tiny` profile: small random models written in the released weight layout.

The files go through exactly the same loading code as real weights (random_weights.py writes
them); `inspatio_profile.json` gives the small architectures and marks the folder as random, so
every consumer can say loudly that the pictures it makes are meaningless.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models.depth import DepthSettings
from ..models.dit import DiTConfig
from ..models.taehv import TAEHVConfig
from ..models.text_encoder import TextEncoderConfig
from ..models.wan_vae import WanVAEConfig
from .random_weights import SPECIAL_TOKENS, WORDS, RandomWeights, write_random_weights, write_tokenizer
from .tiny_conditioning import TINY_DA3_PRESET, TINY_FLORENCE
from .weights import WeightsFolder

__all__ = ["TINY", "write_tiny_weights", "write_tokenizer"]

TINY_TEXT_LEN = 16
TINY_DIT = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=TINY_TEXT_LEN)
TINY_VAE = WanVAEConfig(dim=8)
TINY_TAEHV = TAEHVConfig(n_f=(32, 16, 16, 16))
# DA3 at 112 (8x5 patches) instead of 504, and depth/render/generation at 224x128 instead of
# 832x480 (112x64): at full size the tiny pipeline takes minutes on a CPU; its pictures are noise anyway.
TINY_DEPTH = DepthSettings(process_res=112, output_size=(112, 64))
TINY_T5 = TextEncoderConfig(
    vocab_size=len(SPECIAL_TOKENS) + len(WORDS), dim=32, dim_attn=32, dim_ffn=64, num_heads=2,
    encoder_layers=2, text_len=TINY_TEXT_LEN,
)  # fmt: skip
TINY = RandomWeights(
    dit=TINY_DIT, vae=TINY_VAE, taehv=TINY_TAEHV, text_encoder=TINY_T5, text_encoder_dtype=torch.float32,
    da3_preset=TINY_DA3_PRESET, florence=TINY_FLORENCE,
    profile={"vae": TINY_VAE, "taehv": TINY_TAEHV, "text_encoder": TINY_T5, "depth": TINY_DEPTH},
)  # fmt: skip


def write_tiny_weights(root: Path, seed: int = 0, conditioning: bool = True) -> WeightsFolder:
    """Write a complete tiny weight folder (idempotent: an existing complete folder is kept).

    `conditioning=False` skips DA3 and Florence-2 (the generator alone; DA3 takes ~8 s to build). Both
    releases' DiT checkpoints are written (a tiny one is cheap)."""
    return write_random_weights(root, TINY, seed=seed, conditioning=conditioning, model_versions=("v1", "v1_5"))
