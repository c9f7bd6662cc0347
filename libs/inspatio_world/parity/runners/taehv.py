"""TAEHV cases: encode `frames` and decode `latents`, whole-sequence and one step at a time.

Inputs: frames [N, T, 3, H, W] in [0, 1], latents [N, t, C, h, w]. Outputs: encoded,
encoded_sequential, decoded, decoded_sequential. Weights go through `load_taehv` (so the TGrow
row trim is exercised) and are cast to the case dtype, as are the inputs.
"""

from __future__ import annotations

import torch

from ...models.taehv import TAEHVConfig, load_taehv
from ..case import ParityCase
from . import runner


@runner("utils/taehv.py TAEHV")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    config = TAEHVConfig.from_dict(case.model_config)
    model = load_taehv(case.weights_path, config, dtype=case.dtype, device=device)
    frames = case.inputs["frames"].to(device=device, dtype=case.dtype)
    latents = case.inputs["latents"].to(device=device, dtype=case.dtype)
    return {
        "encoded": model.encode_video(frames),
        "encoded_sequential": model.encode_video(frames, parallel=False),
        "decoded": model.decode_video(latents),
        "decoded_sequential": model.decode_video(latents, parallel=False),
    }
