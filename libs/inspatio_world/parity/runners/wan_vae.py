"""Parity runner for the Wan2.1 VAE cases (upstream `WanVAE_` driven through `WanVAEWrapper`).

Outputs (case layouts): `latents` = encode(video) BTCHW; `recon` = decode(latents) BTCHW clamped;
`decode_rand` / `decode_rand_raw` = decode(z_rand) clamped BTCHW / unclamped BCTHW;
`stream_chunk1` / `stream_chunk2` = one decode stream fed z_rand[:, :k] then z_rand[:, k:], unclamped
BCTHW, with k read from the declared frame count of `stream_chunk1` (1 + 4(k-1) frames).
"""

from __future__ import annotations

import torch

from ...models.wan_vae import FRAMES_PER_LATENT, WanVAEConfig, load_wan_vae
from ..case import ParityCase
from . import runner


def _bcthw(frames: torch.Tensor) -> torch.Tensor:
    return frames.permute(0, 2, 1, 3, 4)


@runner("wan/modules/vae.py WanVAE_")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    vae = load_wan_vae(case.weights_path, WanVAEConfig.from_dict(case.model_config), dtype=case.dtype, device=device)
    video = case.inputs["video"].to(device, case.dtype)
    z_rand = case.inputs["z_rand"].to(device, case.dtype)

    latents = vae.encode(video)
    out = {
        "latents": latents,
        "recon": vae.decode(latents.to(case.dtype)),  # the pipeline casts latents back (lossless)
        "decode_rand": vae.decode(z_rand),
        "decode_rand_raw": _bcthw(vae.decode(z_rand, clamp=False)),
    }
    declared = case.meta.get("outputs", {})
    if "stream_chunk1" in declared:
        first_frames = declared["stream_chunk1"]["shape"][2]
        split = 1 + (first_frames - 1) // FRAMES_PER_LATENT
        stream = vae.decode_stream(clamp=False)
        out["stream_chunk1"] = _bcthw(stream.push(z_rand[:, :split]))
        out["stream_chunk2"] = _bcthw(stream.push(z_rand[:, split:]))
    return out
