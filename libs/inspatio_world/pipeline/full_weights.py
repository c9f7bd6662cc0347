"""The `random-full` profile: random weights at the real shapes of every released model.

Same writer and file layout as `tiny` (random_weights.py), with the released architectures and
dtypes: the 1.3B Wan2.1 DiT (36-channel InSpatio file, fp32, plus the Wan base file), the Wan VAE
(fp32 .pth), umT5-XXL encoder (bf16 .pth), TAEHV, DA3 nested giant-large (fp32 safetensors) and
Florence-2-large (native transformers layout). The profile file sets no architecture, so every
loader builds the released one. Pictures are meaningless; every cost (disk, load, memory, compute)
is real. About 31 GiB on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..models.dit import DiTConfig
from ..models.taehv import TAEHVConfig
from ..models.text_encoder import TextEncoderConfig
from ..models.wan_vae import WanVAEConfig
from .random_weights import RandomWeights, write_random_weights
from .tiny_conditioning import FlorenceSize
from .weights import WeightsFolder

DA3_PRESET = "da3nested-giant-large"  # upstream's checkpoints/DA3 (spec conditioning §2)
# florence-community/Florence-2-large: BART-large text model over a DaViT with 4 stages, 768x768
# input (24x24 cells + 1 pooled = 577 image tokens, spec conditioning §1), vocabulary 51289.
FLORENCE_LARGE = FlorenceSize(
    text=dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16, decoder_attention_heads=16,
              encoder_ffn_dim=4096, decoder_ffn_dim=4096, max_position_embeddings=1024),
    vision=dict(depths=[1, 1, 9, 1], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2], patch_padding=[3, 1, 1, 1],
                patch_prenorm=[False, True, True, True], embed_dim=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64],
                num_groups=[8, 16, 32, 64], window_size=12, projection_dim=1024),
    image_size=768,
    vocab_size=51289,
)  # fmt: skip
FULL = RandomWeights(
    dit=DiTConfig(), vae=WanVAEConfig(), taehv=TAEHVConfig(), text_encoder=TextEncoderConfig(),
    text_encoder_dtype=torch.bfloat16, da3_preset=DA3_PRESET, florence=FLORENCE_LARGE,
    std={"dit": 0.02, "vae": 0.02, "text_encoder": 0.02, "taehv": 0.02},
)  # fmt: skip


def write_full_weights(root: Path, device: torch.device | str | None = None, seed: int = 0,
                       progress: Callable[[str], None] = lambda _: None,
                       model_versions: tuple[str, ...] = ("v1",)) -> WeightsFolder:  # fmt: skip
    """Write the folder (kept if already complete); `device` None: CUDA when available; `model_versions`:
    whose DiT checkpoints (v1_5 adds InSpatio-World-1.5-1.3B.safetensors, about 5.3 GiB more)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    progress(f"writing random-full weights to {root} (models built on {device}; about 31 GiB)")
    return write_random_weights(Path(root), FULL, seed=seed, device=device, progress=progress, model_versions=model_versions)
