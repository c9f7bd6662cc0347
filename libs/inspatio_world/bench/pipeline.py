"""Step 3 end to end at real shapes with random weights: text, per-block encode, generate, decode.

For each autoencoder: one untimed run (compilation, CUDA-graph capture, cuDNN autotuning), then a
timed run of the same request: seconds to the first decoded frames, total seconds, output fps,
and the peak GPU memory of the timed run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from ..pipeline.generator import GenerationRequest, VideoGenerator
from ..pipeline.models import GeneratorModels
from ..pipeline.random_weights import write_tokenizer


def _random_request(frames: int, height: int, width: int, autoencoder: str) -> GenerationRequest:
    g = torch.Generator().manual_seed(0)
    source = torch.rand(frames, 3, height, width, generator=g) * 2 - 1
    mask = (torch.rand(frames, 1, height, width, generator=g) > 0.3).float() * 2 - 1
    return GenerationRequest(source, source.flip(-1), mask.expand(-1, 3, -1, -1), "a street at dusk", 0, autoencoder)


def _run(generator: VideoGenerator, request: GenerationRequest) -> dict:
    torch.cuda.synchronize()
    start = time.perf_counter()
    first = None
    frames = 0
    for block in generator.stream(request):
        frames += block.frames.shape[0]
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    return {"first_frames_s": round(first, 3), "total_s": round(total, 3), "output_frames": frames, "fps": round(frames / total, 2)}


def bench_pipeline(frames: int, height: int, width: int, compile_dit: bool, cuda_graphs: bool,
                   progress: Callable[[str], None], offload_text_encoder: bool = True, fp8: bool = False) -> dict:  # fmt: skip
    """`offload_text_encoder` (default on here) keeps umT5 in host memory between prompts, which
    is what bounds the generator's peak GPU memory."""
    device = torch.device("cuda")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        write_tokenizer(Path(tokenizer_dir))
        models = GeneratorModels.random(device, tokenizer_dir, compile_dit=compile_dit, offload_text_encoder=offload_text_encoder,
                                        fp8=fp8)  # fmt: skip
    generator = VideoGenerator(models, cuda_graphs=cuda_graphs)
    report = {"build_s": round(time.perf_counter() - started, 2), "text_encoder_offloaded": offload_text_encoder}
    for autoencoder in ("taehv", "wan_vae"):
        request = _random_request(frames, height, width, autoencoder)
        progress(f"pipeline {autoencoder}: warm-up run")
        warm = _run(generator, request)
        models.text_encoder.clear_cache()  # the timed run encodes its prompt again
        torch.cuda.reset_peak_memory_stats()
        progress(f"pipeline {autoencoder}: timed run")
        timed = _run(generator, request)
        timed["warmup_run_s"] = warm["total_s"]
        timed["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        # Another trajectory of the same video: its prompt is in the encoder's cache.
        timed["first_frames_cached_prompt_s"] = _run(generator, request)["first_frames_s"]
        report[autoencoder] = timed
    report["start_to_full_speed_s"] = round(report["build_s"] + report["taehv"]["warmup_run_s"], 2)
    return report
