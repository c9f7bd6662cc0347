"""A short clip the project makes itself, with a synthetic camera-pan render and hole mask.

Until the conditioning stages exist in this process, the demo job needs a render and a mask: the
render here is the source shifted sideways by a growing amount (a camera panning right), and the
mask marks the strip it uncovers as a hole, which is the kind of input the generator repairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SampleClip:
    source: torch.Tensor  # [T, 3, H, W] in [-1, 1]
    render: torch.Tensor  # [T, 3, H, W] in [-1, 1]
    mask: torch.Tensor  # [T, 3, H, W] in {-1, +1}, +1 = covered by the render
    prompt: str


def _scene(t: float, height: int, width: int) -> torch.Tensor:
    """Sky gradient, ground, and three boxes moving at different speeds (parallax); [3, H, W] in [0, 1]."""
    y = torch.linspace(0, 1, height).view(height, 1).expand(height, width)
    x = torch.linspace(0, 1, width).view(1, width).expand(height, width)
    sky = torch.stack([0.35 + 0.2 * y, 0.55 + 0.2 * y, 0.95 - 0.1 * y])
    ground = torch.stack([0.30 + 0.1 * x, 0.45 + 0.05 * torch.sin(20 * x), 0.20 + 0 * x])
    image = torch.where(y < 0.6, sky, ground)
    boxes = ((0.15, 0.50, 0.12, 0.20, 0.02, (0.8, 0.2, 0.2)), (0.55, 0.45, 0.18, 0.25, 0.05, (0.9, 0.8, 0.2)),
             (0.30, 0.70, 0.10, 0.15, 0.09, (0.2, 0.3, 0.8)))  # fmt: skip
    for x0, y0, w, h, speed, color in boxes:
        left = (x0 + speed * t) % 1.0
        inside = (x >= left) & (x < left + w) & (y >= y0) & (y < y0 + h)
        image = torch.where(inside, torch.tensor(color).view(3, 1, 1), image)
    return image


def make_sample_clip(frames: int, height: int, width: int, pan_pixels_per_frame: float = 1.0) -> SampleClip:
    source = torch.stack([_scene(t / 8, height, width) for t in range(frames)]) * 2 - 1
    render, mask = torch.empty_like(source), torch.ones_like(source)
    for t in range(frames):
        shift = min(int(pan_pixels_per_frame * t), width)
        render[t] = source[t].roll(-shift, dims=-1)
        if shift:
            render[t, :, :, width - shift :] = -1  # what the new camera sees but the source never did
            mask[t, :, :, width - shift :] = -1
    return SampleClip(source, render, mask, "a street with a red car, a yellow truck and a blue van under the sky")
