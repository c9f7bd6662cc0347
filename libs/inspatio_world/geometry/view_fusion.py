"""Several views rendered into one target camera, fused by a nearer-wins z-buffer (upstream v1.5's
multi-image render loop in pipeline/render_scene.py).

Each view is splatted on its own (any renderer that gives per-view rgb, known mask and splatted
target depth, e.g. geometry/warp_render.py's render_per_frame with one row per view). Per pixel, the view with the smallest splatted depth among those that
know the pixel wins outright (no blending across views); on equal depth the lower view index wins,
as upstream's sequential `distance < fused_depth` update keeps the first. A pixel no view knows is
a hole: rgb -1, mask False. `view_pixels[v]` counts the pixels view v knows in this target (its
coverage, before fusion), which the source-stream anchoring ranks (geometry/view_selection.py).

Layouts: per view rgb [V, 3, H, W] in [-1, 1] (any value where unknown), known bool [V, H, W],
depth [V, H, W]; fused rgb [3, H, W] in [-1, 1]; mask bool [H, W]; view_pixels int64 [V].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FusedRender:
    rgb: torch.Tensor  # [3, H, W] in [-1, 1], holes -1
    mask: torch.Tensor  # [H, W] bool, True = rendered
    view_pixels: torch.Tensor  # [V] int64, pixels each view knows


def fuse_nearest(rgb: torch.Tensor, known: torch.Tensor, depth: torch.Tensor) -> FusedRender:
    """Nearer wins per pixel, ties to the lower view index; see the module docstring."""
    if rgb.dim() != 4 or rgb.shape[1] != 3 or known.shape != (rgb.shape[0], *rgb.shape[2:]) or depth.shape != known.shape:
        raise ValueError(f"expected rgb [V, 3, H, W], known and depth [V, H, W]; got {list(rgb.shape)}, {list(known.shape)}, {list(depth.shape)}")
    known = known.to(torch.bool)
    depth = torch.where(known, depth, torch.inf)
    nearest = depth.argmin(dim=0)  # argmin returns the first of equal minima: the lower view index
    chosen = torch.gather(rgb, 0, nearest[None, None].expand(1, 3, -1, -1))[0]
    mask = known.any(dim=0)
    return FusedRender(torch.where(mask[None], chosen, -1.0), mask, known.sum(dim=(1, 2)))
