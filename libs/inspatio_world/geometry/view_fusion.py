"""Several views rendered into one target camera, fused by a nearer-wins z-buffer (upstream v1.5's
multi-image render loop in pipeline/render_scene.py).

Each view is splatted on its own (any renderer that gives per-view rgb, known mask and target depth,
e.g. geometry/view_render.py). Per pixel, the view with the smallest splatted depth among those that
know the pixel wins outright (no blending across views); on equal depth the lower view index wins,
as upstream's sequential `distance < fused_depth` update keeps the first. A pixel no view knows is
a hole: rgb -1, mask False. `view_pixels[v]` counts the pixels view v knows in this target (its
coverage, before fusion), which the source-stream anchoring ranks (geometry/view_selection.py).

Layouts: rgb [3, H, W] in [-1, 1]; mask bool [H, W]; view_pixels int64 [V].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch


class PerViewRender(Protocol):
    rgb: torch.Tensor  # [3, H, W]
    known: torch.Tensor  # [H, W] bool
    depth: torch.Tensor  # [H, W]


@dataclass(frozen=True)
class FusedRender:
    rgb: torch.Tensor  # [3, H, W] in [-1, 1], holes -1
    mask: torch.Tensor  # [H, W] bool, True = rendered
    view_pixels: torch.Tensor  # [V] int64, pixels each view knows


def fuse_nearest(renders: Sequence[PerViewRender]) -> FusedRender:
    """Nearer wins per pixel, ties to the lower view index; see the module docstring."""
    if not renders:
        raise ValueError("fusion needs at least one view")
    known = torch.stack([r.known.to(torch.bool) for r in renders])  # [V, H, W]
    depth = torch.where(known, torch.stack([r.depth for r in renders]), torch.inf)
    nearest = depth.argmin(dim=0)  # argmin returns the first of equal minima: the lower view index
    rgb = torch.stack([r.rgb for r in renders])  # [V, 3, H, W]
    chosen = torch.gather(rgb, 0, nearest[None, None].expand(1, 3, -1, -1))[0]
    mask = known.any(dim=0)
    return FusedRender(torch.where(mask[None], chosen, -1.0), mask, known.sum(dim=(1, 2)))
