"""`inspatio bench conditioning`: depth/poses (DA3 nested giant-large) and the point-cloud render
at real shapes with random weights on CUDA, as JSON (seconds, frames/s, peak GPU memory).

DA3 runs upstream's way: all frames in one forward pass at the processing resolution of a 480x832
input (504x294). The render warps every frame of the video into its target camera of the
x_y_circle_cycle trajectory at 480x832, in chunks of frames.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .measure import timed

HEIGHT, WIDTH = 480, 832


def bench_depth(frames: int, progress: Callable[[str], None]) -> dict:
    from ..models.depth import DepthEstimator
    from ..models.depth_checkpoint import build_network, network_config

    progress("DA3 nested giant-large: building with random weights")
    network, build_s = timed(lambda: build_network(network_config("da3nested-giant-large"), device="cuda"))
    estimator = DepthEstimator(network, model_name="da3nested-giant-large")
    images = np.random.default_rng(0).integers(0, 256, size=(frames, HEIGHT, WIDTH, 3), dtype=np.uint8)
    progress(f"DA3: warm-up, then timed run over {frames} frames")
    estimator.estimate(images[:8])
    torch.cuda.reset_peak_memory_stats()
    result, seconds = timed(lambda: estimator.estimate(images))
    return {
        "frames": frames, "build_s": round(build_s, 2), "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 2), "process_size": list(result.process_size),
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }  # fmt: skip


def bench_render(frames: int, chunk_frames: int, progress: Callable[[str], None]) -> dict:
    from ..geometry.trajectory import find_trajectory, load_trajectory, target_c2ws
    from ..geometry.warp_render import warp_render

    device = torch.device("cuda")
    g = torch.Generator(device).manual_seed(0)
    colours = torch.rand(frames, 3, HEIGHT, WIDTH, generator=g, device=device) * 2 - 1
    depths = 1 + 9 * torch.rand(frames, HEIGHT, WIDTH, generator=g, device=device)
    K = torch.tensor([[500.0, 0, WIDTH / 2], [0, 500.0, HEIGHT / 2], [0, 0, 1]], device=device)
    source = torch.eye(4, device=device).repeat(frames, 1, 1)
    source[:, 2, 3] = torch.linspace(0, 0.5, frames, device=device)  # a camera moving forward
    targets = target_c2ws(load_trajectory(find_trajectory("x_y_circle_cycle.txt")), source, False, False)
    progress(f"render: {frames} frames at {WIDTH}x{HEIGHT}, chunks of {chunk_frames}")
    warp_render(colours[:2], depths[:2], K, source[:2], targets[:2])
    torch.cuda.reset_peak_memory_stats()
    _, seconds = timed(lambda: warp_render(colours, depths, K, source, targets, chunk_frames=chunk_frames))
    return {
        "frames": frames, "chunk_frames": chunk_frames, "seconds": round(seconds, 3),
        "frames_per_s": round(frames / seconds, 2), "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }  # fmt: skip


def run_conditioning_bench(frames: int = 81, progress: Callable[[str], None] = lambda _: None) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("inspatio bench conditioning needs a CUDA GPU (none is visible to torch)")
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    report["render"] = [bench_render(frames, chunk, progress) for chunk in (8, frames)]
    torch.cuda.empty_cache()
    report["depth"] = bench_depth(frames, progress)
    return report
