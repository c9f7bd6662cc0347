"""Parity runner: validity mask video -> 4-channel mask latents, in fp32 and bf16."""

from __future__ import annotations

import torch

from ...models.mask_latents import mask_to_latent
from ..case import ParityCase
from . import runner


@runner("utils/render_warper.py convert_mask_video")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    mask = case.inputs["mask_video"].to(device)
    return {
        "mask_latent": mask_to_latent(mask),
        "mask_latent_bf16": mask_to_latent(mask.to(torch.bfloat16)),
    }
