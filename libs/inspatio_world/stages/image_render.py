"""The conditioning of an image job: an ImageScene rendered into the target cameras, plus its
source stream (upstream v1.5 render_one for image scenes).

For every target frame, each view is splatted into the camera with its own K and pose
(geometry/warp_render.py render_per_frame, one row per view; target K = view 0's K) and the views
are fused nearer-wins (geometry/view_fusion.py). The source stream the
generator reads in place of a video:

* one view: that picture for every frame;
* four views: per latent (frames [0], [1-4], [5-8], ...), the view chosen from the pixels each view
  covers over that latent's frames, three distinct views per block of three latents
  (geometry/view_selection.py, upstream's select_chunk_top3). The frame count must therefore give
  whole blocks of latents (upstream's rule; pad the cameras first to 1 + 4k frames with k + 1 a
  multiple of 3, e.g. by repeating the last one, as v1.5 pads videos).

Outputs are what a video job's render stage hands the generator: render uint8 [F, H, W, 3] (8-bit
by truncation, holes 0), mask bool [F, H, W] (True = rendered) and source uint8 [F, H, W, 3].
`render_frames` yields them frame by frame for streaming; `render_image_conditioning` collects them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from ..geometry.image_scene import ImageScene
from ..geometry.view_fusion import FusedRender, fuse_nearest
from ..geometry.view_selection import LATENTS_PER_BLOCK, latent_coverage, latent_frame_groups, select_chunk_top3
from ..geometry.warp_render import render_per_frame, render_to_uint8
from ..stopping import StopCheck, go_on

SELECTION_VIEWS = 4


@dataclass(frozen=True, eq=False)
class ImageConditioning:
    render: torch.Tensor  # uint8 [F, H, W, 3]
    mask: torch.Tensor  # bool [F, H, W]
    source: torch.Tensor  # uint8 [F, H, W, 3]
    source_views: list[int]  # the view each latent's source frames show
    overlap_pixels: list[list[int]] = field(default_factory=list)  # [latents][views] coverage (four views)
    chunk_views: list[list[int]] = field(default_factory=list)  # [blocks][3] views kept per block (four views)


def check_frame_count(views: int, frames: int) -> None:
    """Four views need whole blocks of three latents; any positive count serves one view."""
    if frames < 1:
        raise ValueError(f"an image job needs at least one target camera, got {frames}")
    latents = len(latent_frame_groups(frames))
    if views not in (1, SELECTION_VIEWS):
        raise ValueError(f"an image scene has 1 or 4 views, got {views}")
    if views == SELECTION_VIEWS and latents % LATENTS_PER_BLOCK:
        raise ValueError(f"four-view jobs need whole blocks of {LATENTS_PER_BLOCK} latents (frames [0], [1-4], ...): "
                         f"{frames} frames make {latents} latents; pad to 9, 21, 33, ... frames")


def render_frames(scene: ImageScene, target_w2c: torch.Tensor, device: torch.device | str = "cpu",
                  should_stop: StopCheck = go_on) -> Iterator[FusedRender]:  # fmt: skip
    """Each target frame fused from every view, in order (on `device`)."""
    device = torch.device(device)
    images = torch.from_numpy(scene.images).permute(0, 3, 1, 2).to(device)  # uint8 [V, 3, H, W]
    depth, K, w2c = (torch.from_numpy(a).to(device) for a in (scene.depth, scene.intrinsics, scene.w2c))
    for target in torch.as_tensor(target_w2c, dtype=torch.float32).to(device):
        should_stop()
        views = render_per_frame(images, depth, K, w2c, target.expand(scene.views, 4, 4), K[0], chunk_frames=scene.views)
        yield fuse_nearest(views.render, views.mask, views.depth)


def render_image_conditioning(scene: ImageScene, target_w2c: torch.Tensor, device: torch.device | str = "cpu",
                              should_stop: StopCheck = go_on) -> ImageConditioning:  # fmt: skip
    """Render, mask and source stream for the target cameras w2c [F, 4, 4] (see the module docstring)."""
    frames = len(target_w2c)
    check_frame_count(scene.views, frames)
    renders, masks, coverage = [], [], []
    for fused in render_frames(scene, target_w2c, device, should_stop):
        renders.append(render_to_uint8(fused.rgb[None]).cpu())
        masks.append(fused.mask[None].cpu())
        coverage.append(fused.view_pixels.tolist())
    groups = latent_frame_groups(frames)
    if scene.views == SELECTION_VIEWS:
        overlap = latent_coverage(coverage, frames)
        views, chunk_views = select_chunk_top3(overlap)
    else:
        overlap, views, chunk_views = [], [0] * len(groups), []
    per_frame = np.concatenate([np.full(len(group), view) for group, view in zip(groups, views)])
    source = torch.from_numpy(scene.images[per_frame])
    return ImageConditioning(torch.cat(renders), torch.cat(masks), source, list(views), overlap, chunk_views)
