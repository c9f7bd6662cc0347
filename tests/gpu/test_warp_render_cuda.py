"""CUDA only: the renderer's atomic sums on the GPU give the CPU's (upstream's sequential) render and
mask up to float rounding: a splat landing on the other side of a pixel edge is rare."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.geometry.trajectory import parse_trajectory, target_c2ws
from inspatio_world.geometry.warp_render import warp_render

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

N, H, W = 12, 96, 160


def test_cuda_render_matches_the_cpu_render():
    g = torch.Generator().manual_seed(3)
    frames = torch.rand(N, 3, H, W, generator=g) * 2 - 1
    depths = 1.0 + 4.0 * torch.rand(N, H, W, generator=g)
    K = torch.tensor([[120.0, 0, W / 2], [0, 118.0, H / 2], [0, 0, 1]])
    source = torch.eye(4).repeat(N, 1, 1)
    targets = target_c2ws(parse_trajectory("0 0 0\n8 -10 0\n0.2 0 0"), source, rotation_only=False, relative_to_source=False)
    cpu_render, cpu_mask = warp_render(frames, depths, K, source, targets)
    cuda_render, cuda_mask = (t.cpu() for t in warp_render(frames.cuda(), depths.cuda(), K.cuda(), source.cuda(), targets.cuda()))
    assert 0.3 < cpu_mask.mean() < 1.0  # the camera moved: a real mix of holes and splats
    assert (cpu_mask != cuda_mask).float().mean() < 1e-3
    both = (cpu_mask * cuda_mask).bool().expand_as(cpu_render)
    assert (cpu_render[both] - cuda_render[both]).abs().mean() < 1e-3
