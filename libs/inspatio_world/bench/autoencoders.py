"""Encode/decode timings of the Wan VAE (bf16) and TAEHV (fp16) at real shapes with random weights.

Each autoencoder encodes the benchmark video once and decodes its latents once, both block by
block through the streaming API (the way the generator uses them), after one untimed warm-up.
With compile variants (`--compile-autoencoders`), the same models are then timed through their
compiled steps (autoencoder_compile.py), and each variant's latents and frames are compared with
the eager ones; every variant decodes the eager latents, so the frame difference is the decoder's.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..models.autoencoder_compile import use_channels_last
from ..models.checkpoints import init_random_
from ..models.taehv import TAEHV, DecoderStream, EncoderStream
from ..models.wan_vae import WanVAE, build_wan_vae
from .measure import relative_l2, timed

BLOCK_FRAMES = 12  # pixel frames per generator block (3 latents)
BLOCK_LATENTS = 3
CHANNELS_LAST = "channels_last"  # variant suffix: channels-last convolution weights


def _chunks(total: int, first: int, size: int) -> list[slice]:
    edges = [0, min(first, total)]
    while edges[-1] < total:
        edges.append(min(edges[-1] + size, total))
    return [slice(a, b) for a, b in zip(edges, edges[1:])]


def _wan_vae_passes(vae: WanVAE, video: torch.Tensor) -> tuple[Callable[[], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """video: [1, 3, T, H, W] bf16 in [-1, 1]; blocks of 9 then 12 frames, decode 3 latents at a time."""
    frames = 1 + (video.shape[2] - 1) // 4 * 4

    def encode() -> torch.Tensor:
        stream = vae.encode_stream()
        return torch.cat([stream.push(video[:, :, s]) for s in _chunks(frames, BLOCK_FRAMES - 3, BLOCK_FRAMES)], dim=1)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        stream = vae.decode_stream()
        latents = latents.to(torch.bfloat16)
        return torch.cat([stream.push(latents[:, s]) for s in _chunks(latents.shape[1], BLOCK_LATENTS, BLOCK_LATENTS)], dim=1)

    return encode, decode


def _taehv_passes(model: TAEHV, video: torch.Tensor) -> tuple[Callable[[], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]:
    """video: [1, T, 3, H, W] fp16 in [0, 1]; chunks of 12 frames, decode 3 latents at a time."""

    def encode() -> torch.Tensor:
        stream = EncoderStream(model)
        spans = _chunks(video.shape[1], BLOCK_FRAMES, BLOCK_FRAMES)
        return torch.cat([stream.push(video[:, s], last=i == len(spans) - 1) for i, s in enumerate(spans)], dim=1)

    def decode(latents: torch.Tensor) -> torch.Tensor:
        stream = DecoderStream(model)
        return torch.cat([stream.push(latents[:, s]) for s in _chunks(latents.shape[1], BLOCK_LATENTS, BLOCK_LATENTS)], dim=1)

    return encode, decode


def _measure(encode: Callable[[], torch.Tensor], decode: Callable[[torch.Tensor], torch.Tensor],
             latents_in: torch.Tensor | None = None) -> tuple[dict, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Warm-up (compilation, cuDNN plans), then a timed encode and decode. Decodes `latents_in`
    (else its own latents). Returns the timings, the latents and the decoded frames."""
    out: dict[str, torch.Tensor] = {}

    def encode_then_decode() -> None:
        latents = encode()
        decode(latents if latents_in is None else latents_in)

    with torch.no_grad():
        _, warmup_s = timed(encode_then_decode)
        torch.cuda.reset_peak_memory_stats()
        _, encode_s = timed(lambda: out.update(latents=encode()))
        _, decode_s = timed(lambda: out.update(frames=decode(out["latents"] if latents_in is None else latents_in)))
    result = {"encode_s": round(encode_s, 3), "decode_s": round(decode_s, 3), "warmup_s": round(warmup_s, 2)}
    result["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result, out["latents"], out["frames"]


def _difference(name: str, value: torch.Tensor, reference: torch.Tensor) -> dict:
    return {
        f"{name}_max_abs_diff": float((value.float() - reference.float()).abs().max()),
        f"{name}_rel_l2": round(relative_l2(value, reference), 6),
    }


def _compiled_variants(model, passes, video: torch.Tensor, variants: list[str], eager: dict,
                       latents: torch.Tensor, frames: torch.Tensor, progress: Callable[[str], None], label: str) -> dict:  # fmt: skip
    """Time each variant ("<mode>", "eager_channels_last", "<mode>_channels_last") on `model`
    against the eager run's timings and outputs; the model is eager and row-major again afterwards."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    report = {}
    for variant in variants:
        mode = variant.removesuffix("_" + CHANNELS_LAST)
        progress(f"{label} {variant}: warm-up (compilation), then timed encode/decode")
        torch._dynamo.reset()  # each variant compiles afresh and counts its own graphs
        graphs_before = counters["stats"]["unique_graphs"]
        model.use_compiled_steps(None if mode == "eager" else mode)
        use_channels_last(model, variant.endswith(CHANNELS_LAST))
        encode, decode = passes(model, video)
        result, variant_latents, variant_frames = _measure(encode, decode, latents_in=latents)
        result["graphs"] = counters["stats"]["unique_graphs"] - graphs_before
        result["encode_speedup"] = round(eager["encode_s"] / result["encode_s"], 2)
        result["decode_speedup"] = round(eager["decode_s"] / result["decode_s"], 2)
        report[variant] = result | _difference("latents", variant_latents, latents) | _difference("frames", variant_frames, frames)
    model.use_compiled_steps(None)
    use_channels_last(model, False)
    return report


def bench_autoencoders(num_frames: int, height: int, width: int, progress: Callable[[str], None],
                       compile_modes: tuple[str, ...] = ()) -> dict:  # fmt: skip
    """Eager timings per autoencoder; with `compile_modes`, a "compiled" part: per autoencoder and
    variant, timings, graphs compiled, speed-ups and differences from eager."""
    g = torch.Generator("cuda").manual_seed(0)
    video = torch.rand(1, 3, num_frames, height, width, generator=g, device="cuda") * 2 - 1
    wan_video = video.to(torch.bfloat16)
    tae_video = (video * 0.5 + 0.5).permute(0, 2, 1, 3, 4).to(torch.float16)
    report: dict = {"frames": num_frames}
    compiled: dict = {}
    for name, model, passes, clip in (
        ("wan_vae", lambda: init_random_(build_wan_vae(dtype=torch.bfloat16, device="cuda")).eval(), _wan_vae_passes, wan_video),
        ("taehv", lambda: init_random_(TAEHV().to("cuda", torch.float16)).eval().requires_grad_(False), _taehv_passes, tae_video),
    ):
        model = model()
        progress(f"{name}: warm-up, then timed encode/decode")
        eager, latents, frames = _measure(*passes(model, clip))
        report[name] = eager
        if compile_modes:
            variants = [*compile_modes, f"eager_{CHANNELS_LAST}", *(f"{mode}_{CHANNELS_LAST}" for mode in compile_modes)]
            compiled[name] = _compiled_variants(model, passes, clip, variants, eager, latents, frames, progress, name)
        del model, latents, frames
        torch.cuda.empty_cache()
    if compiled:
        report["compiled"] = compiled
    return report
