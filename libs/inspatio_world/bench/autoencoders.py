"""Encode/decode timings of the Wan VAE (bf16) and TAEHV (fp16) at real shapes with random weights.

Each autoencoder encodes the benchmark video once and decodes its latents once, both block by
block through the streaming API (the way the generator uses them), after one untimed warm-up.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

from ..models.checkpoints import init_random_
from ..models.taehv import TAEHV, DecoderStream, EncoderStream
from ..models.wan_vae import build_wan_vae

BLOCK_FRAMES = 12  # pixel frames per generator block (3 latents)
BLOCK_LATENTS = 3


def _seconds(fn: Callable[[], object]) -> float:
    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def _chunks(total: int, first: int, size: int) -> list[slice]:
    edges = [0, min(first, total)]
    while edges[-1] < total:
        edges.append(min(edges[-1] + size, total))
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


def bench_wan_vae(video: torch.Tensor, progress: Callable[[str], None]) -> dict:
    """video: [1, 3, T, H, W] bf16 in [-1, 1]; blocks of 9 then 12 frames, decode 3 latents at a time."""
    vae = init_random_(build_wan_vae(dtype=torch.bfloat16, device=video.device)).eval()
    frames = 1 + (video.shape[2] - 1) // 4 * 4
    latents_out: list[torch.Tensor] = []

    def encode() -> None:
        stream = vae.encode_stream()
        latents_out[:] = [stream.push(video[:, :, s]) for s in _chunks(frames, BLOCK_FRAMES - 3, BLOCK_FRAMES)]

    def decode() -> None:
        stream = vae.decode_stream()
        latents = torch.cat(latents_out, dim=1).to(torch.bfloat16)
        for s in _chunks(latents.shape[1], BLOCK_LATENTS, BLOCK_LATENTS):
            stream.push(latents[:, s])

    progress("Wan VAE: warm-up, then timed encode/decode")
    encode(), decode()
    torch.cuda.reset_peak_memory_stats()
    result = {"encode_s": round(_seconds(encode), 3), "decode_s": round(_seconds(decode), 3)}
    result["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def bench_taehv(video: torch.Tensor, progress: Callable[[str], None]) -> dict:
    """The same video as [1, T, 3, H, W] fp16 in [0, 1]; chunks of 12 frames, decode 3 latents at a time."""
    model = init_random_(TAEHV().to(video.device, torch.float16)).eval()
    frames = video.shape[1]
    latents_out: list[torch.Tensor] = []

    def encode() -> None:
        stream = EncoderStream(model)
        spans = _chunks(frames, BLOCK_FRAMES, BLOCK_FRAMES)
        latents_out[:] = [stream.push(video[:, s], last=i == len(spans) - 1) for i, s in enumerate(spans)]

    def decode() -> None:
        stream = DecoderStream(model)
        latents = torch.cat(latents_out, dim=1)
        for s in _chunks(latents.shape[1], BLOCK_LATENTS, BLOCK_LATENTS):
            stream.push(latents[:, s])

    progress("TAEHV: warm-up, then timed encode/decode")
    with torch.no_grad():
        encode(), decode()
        torch.cuda.reset_peak_memory_stats()
        result = {"encode_s": round(_seconds(encode), 3), "decode_s": round(_seconds(decode), 3)}
    result["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def bench_autoencoders(num_frames: int, height: int, width: int, progress: Callable[[str], None]) -> dict:
    g = torch.Generator("cuda").manual_seed(0)
    video = torch.rand(1, 3, num_frames, height, width, generator=g, device="cuda") * 2 - 1
    return {
        "frames": num_frames,
        "wan_vae": bench_wan_vae(video.to(torch.bfloat16), progress),
        "taehv": bench_taehv((video * 0.5 + 0.5).permute(0, 2, 1, 3, 4).to(torch.float16), progress),
    }
