"""Mask latents block by block equal the whole-video conversion."""

from __future__ import annotations

import torch

from inspatio_world.models.mask_latents import mask_to_latent, pixel_frames_of


def test_latent_packing_of_frames():
    frames = torch.arange(9, dtype=torch.float32).view(1, 1, 9, 1, 1).expand(1, 3, 9, 8, 8)
    latents = mask_to_latent(frames)
    assert latents.shape == (1, 3, 4, 1, 1)
    assert latents[0, :, :, 0, 0].tolist() == [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8]]


def test_blockwise_equals_whole_video():
    g = torch.Generator().manual_seed(0)
    mask = torch.randn(1, 3, 45, 32, 48, generator=g).sign().to(torch.bfloat16)
    whole = mask_to_latent(mask)
    assert whole.shape[1] == 12
    blocks = []
    for start in range(0, 12, 3):
        span = pixel_frames_of(slice(start, start + 3))
        blocks.append(mask_to_latent(mask[:, :, span], continuation=start > 0))
    assert [pixel_frames_of(slice(s, s + 3)) for s in (0, 3)] == [slice(0, 9), slice(9, 21)]
    assert torch.equal(torch.cat(blocks, dim=1), whole)
