"""Random sampler conditioning for tiny DiTs (4x6 latents) on the CPU."""

from __future__ import annotations

import torch

from inspatio_world.models.dit import DiTConfig
from inspatio_world.models.sampler import Conditioning


def tiny_conditioning(config: DiTConfig, frames: int, seed: int = 0) -> Conditioning:
    """`frames` latent frames of source, render and ±1 mask, and a prompt of the config's text shape."""
    g = torch.Generator().manual_seed(seed)
    shape = (1, frames, 16, 4, 6)
    return Conditioning(
        prompt_embeds=torch.randn(1, config.text_len, config.text_dim, generator=g),
        ref_latent=torch.randn(shape, generator=g),
        render_latent=torch.randn(shape, generator=g),
        mask_latent=torch.randn(1, frames, 4, 4, 6, generator=g).sign(),
    )
