"""Round trips through the streaming autoencoders, as the generator drives them block by block."""

from __future__ import annotations

import torch

from inspatio_world.models.taehv import TAEHV, DecoderStream, EncoderStream


def taehv_round_trip(model: TAEHV, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [B, T, 3, H, W] pushed 12 at a time (the last chunk marked), latents decoded 3 at a
    time; returns (latents, decoded frames)."""
    encoder, decoder = EncoderStream(model), DecoderStream(model)
    chunks = frames.split(12, dim=1)
    latents = torch.cat([encoder.push(c, last=i == len(chunks) - 1) for i, c in enumerate(chunks)], dim=1)
    return latents, torch.cat([decoder.push(part) for part in latents.split(3, dim=1)], dim=1)
