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
`render_image_conditioning` collects them in memory; `iter_render_and_mask` + `choose_sources`
stream them (the source views are known only once every frame's coverage is).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..geometry.image_scene import ImageScene
from ..geometry.view_fusion import FusedRender, fuse_nearest
from ..geometry.frame_schedule import LATENTS_PER_BLOCK
from ..geometry.view_selection import ANCHOR_VIEWS, latent_coverage, latent_frame_groups, select_chunk_top3
from ..geometry.warp_render import render_per_frame, render_to_uint8
from ..stopping import StopCheck, go_on


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
    if views not in (1, ANCHOR_VIEWS):
        raise ValueError(f"an image scene has 1 or 4 views, got {views}")
    if views == ANCHOR_VIEWS and latents % LATENTS_PER_BLOCK:
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


@dataclass(frozen=True)
class SourceChoice:
    """Which view each latent's (and so each frame's) source frames show."""

    source_views: list[int]  # [latents]
    frame_views: list[int]  # [frames]
    overlap_pixels: list[list[int]] = field(default_factory=list)  # [latents][views] (four views)
    chunk_views: list[list[int]] = field(default_factory=list)  # [blocks][3] (four views)


def choose_sources(views: int, coverage: list[list[int]]) -> SourceChoice:
    """Per-frame coverage [frames][views] -> the source stream's views (one view: always view 0)."""
    frames = len(coverage)
    groups = latent_frame_groups(frames)
    if views == ANCHOR_VIEWS:
        overlap = latent_coverage(coverage, frames)
        chosen, chunk_views = select_chunk_top3(overlap)
    else:
        overlap, chosen, chunk_views = [], [0] * len(groups), []
    frame_views = [view for group, view in zip(groups, chosen) for _ in group]
    return SourceChoice(list(chosen), frame_views, overlap, chunk_views)


def iter_render_and_mask(scene: ImageScene, target_w2c: torch.Tensor, coverage: list[list[int]],
                         device: torch.device | str = "cpu", should_stop: StopCheck = go_on,
                         ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # fmt: skip
    """Per target frame, (render uint8 [1, H, W, 3], mask bool [1, H, W]) on the CPU, appending each
    frame's per-view coverage to `coverage` (for `choose_sources` once every frame is done)."""
    check_frame_count(scene.views, len(target_w2c))
    for fused in render_frames(scene, target_w2c, device, should_stop):
        coverage.append(fused.view_pixels.tolist())
        yield render_to_uint8(fused.rgb[None]).cpu(), fused.mask[None].cpu()


def render_image_conditioning(scene: ImageScene, target_w2c: torch.Tensor, device: torch.device | str = "cpu",
                              should_stop: StopCheck = go_on) -> ImageConditioning:  # fmt: skip
    """Render, mask and source stream for the target cameras w2c [F, 4, 4], all in memory (see the
    module docstring; stages/image_job_render.py streams them to files instead)."""
    coverage: list[list[int]] = []
    renders, masks = zip(*iter_render_and_mask(scene, target_w2c, coverage, device, should_stop))
    choice = choose_sources(scene.views, coverage)
    source = torch.from_numpy(scene.images[choice.frame_views])
    return ImageConditioning(torch.cat(renders), torch.cat(masks), source, choice.source_views, choice.overlap_pixels, choice.chunk_views)
