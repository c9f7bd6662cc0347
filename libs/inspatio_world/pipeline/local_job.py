"""The main job on one machine, in process: the sample clip through the streamed generator to mp4 files.

Without configured weights it writes and uses the tiny random profile, and says so: the pictures
it produces are meaningless, but every stage runs through the real code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .. import envvars
from ..media.video_io import Mp4Writer, write_mp4
from .generator import GenerationRequest, VideoGenerator
from .models import GeneratorModels
from .sample_clip import make_sample_clip
from .tiny_weights import write_tiny_weights
from .weights import WeightsFolder

RANDOM_WEIGHTS_BANNER = (
    "*** TINY RANDOM WEIGHTS: no real weights are configured (set INSPATIO_WEIGHTS), so every model is a\n"
    "*** small random network. The pipeline runs for real, but the pictures it makes are meaningless. ***"
)


def tiny_weights_dir() -> Path:
    """One per user (INSPATIO_CACHE_DIR), so runs from any folder share it."""
    return envvars.cache_dir() / "tiny-weights"


@dataclass(frozen=True)
class SampleJob:
    out_dir: Path
    weights_dir: Path | None = None  # None: the tiny random profile, written to tiny_weights_dir
    tiny_weights_dir: Path | None = None  # None: tiny_weights_dir()
    frames: int = 33
    height: int | None = None  # default: 128x224 for tiny weights, 480x832 for real ones
    width: int | None = None
    seed: int = 0
    autoencoder: str = "wan_vae"
    prompt: str | None = None
    device: str = "auto"
    compile_dit: bool | None = None  # None: compile on CUDA


def run_sample_job(job: SampleJob, emit: Callable[[str], None] = print) -> dict[str, Path]:
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if job.device == "auto" else job.device)
    if job.weights_dir is None:
        weights = write_tiny_weights(job.tiny_weights_dir or tiny_weights_dir(), conditioning=False)
    else:
        weights = WeightsFolder.from_env(Path(job.weights_dir))
    if weights.is_random:
        emit(RANDOM_WEIGHTS_BANNER)
    height, width = (job.height or (128 if weights.is_random else 480)), (job.width or (224 if weights.is_random else 832))

    start = time.perf_counter()
    emit(f"loading models from {weights.root} on {device} ...")
    models = GeneratorModels.load(weights, device, autoencoders=(job.autoencoder,), compile_dit=job.compile_dit)
    emit(f"models ready in {time.perf_counter() - start:.1f} s")
    clip = make_sample_clip(job.frames, height, width)
    request = GenerationRequest(clip.source, clip.render, clip.mask, job.prompt or clip.prompt, job.seed, job.autoencoder)
    generator = VideoGenerator(models)
    plan = generator.validate(request)
    emit(f"sample clip: {job.frames} frames at {width}x{height} -> {plan.blocks} blocks, {plan.output_frames} output frames")

    job.out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {name: job.out_dir / f"{name}.mp4" for name in ("pred", "source", "render", "mask")}
    job_start = time.perf_counter()
    with Mp4Writer(outputs["pred"], width, height) as writer:
        for block in generator.stream(request):
            writer.write(block.frames)
            last = block.first_frame + block.frames.shape[0] - 1
            emit(f"block {block.index + 1}/{block.blocks}: frames {block.first_frame}-{last} written "
                 f"({block.seconds:.2f} s, {time.perf_counter() - job_start:.1f} s since start)")  # fmt: skip
    for name, video in (("source", clip.source), ("render", clip.render), ("mask", clip.mask)):
        write_mp4(outputs[name], [(video * 0.5 + 0.5).clamp(0, 1)], width, height)
    emit(f"done in {time.perf_counter() - start:.1f} s; outputs:")
    for path in outputs.values():
        emit(f"  {path}")
    return outputs
