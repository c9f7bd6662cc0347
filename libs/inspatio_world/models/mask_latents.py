"""Validity mask video -> the 4-channel mask latent the DiT reads (upstream `convert_mask_video`).

Each latent frame i >= 1 packs pixel frames 4i-3..4i as 4 channels; latent 0 packs frame 0 four
times, mirroring the Wan VAE's [0], [1-4], [5-8], ... grouping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPATIAL_DOWNSCALE = 8
FRAMES_PER_LATENT = 4


def pixel_frames_of(latents: slice) -> slice:
    """The mask frames that latent frames [start, stop) pack: frame 0 for latent 0, 4i-3..4i for i."""
    return slice(max(0, FRAMES_PER_LATENT * latents.start - 3), FRAMES_PER_LATENT * latents.stop - 3)


def mask_to_latent(mask_video: torch.Tensor, continuation: bool = False) -> torch.Tensor:
    """[B, C, T, H, W] mask in {-1, +1} (+1 = rendered) -> [B, (T+3)//4, 4, H/8, W/8], in its dtype.

    Channel 0 is bilinearly resized (align_corners=False, no antialias) to the latent grid. With
    `continuation`, the frames are a later chunk (`pixel_frames_of` a latent range not starting at 0):
    no frame-0 padding, T // 4 latents.
    """
    b, _, t, h, w = mask_video.shape
    size = (h // SPATIAL_DOWNSCALE, w // SPATIAL_DOWNSCALE)
    frames = mask_video[:, 0].reshape(b * t, 1, h, w)
    small = F.interpolate(frames, size=size, mode="bilinear", align_corners=False).view(b, t, *size)
    lead = 0 if continuation else FRAMES_PER_LATENT - 1
    padded = torch.cat([small[:, :1].expand(b, lead, *size), small], dim=1)
    usable = padded.shape[1] - padded.shape[1] % FRAMES_PER_LATENT
    return padded[:, :usable].reshape(b, usable // FRAMES_PER_LATENT, FRAMES_PER_LATENT, *size)
