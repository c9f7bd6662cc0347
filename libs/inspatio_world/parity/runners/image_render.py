"""Parity runners: upstream v1.5's image-scene render (per-view splat, nearer-wins fusion, view selection)."""

from __future__ import annotations

import torch

from ...geometry.image_scene import ImageScene
from ...geometry.warp_render import render_per_frame
from ...geometry.view_selection import select_chunk_top3
from ...stages.image_render import render_image_conditioning
from ..case import ParityCase
from . import runner


def _scene(case: ParityCase) -> ImageScene:
    inputs = case.inputs
    return ImageScene(*(inputs[name].numpy() for name in ("images", "depth", "intrinsics", "w2c")))


@runner("pipeline/render_scene.py render_one")
def run_render_one(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    result = render_image_conditioning(_scene(case), case.inputs["target_w2c"], device)
    out = {"render_uint8": result.render, "mask_uint8": result.mask.to(torch.uint8) * 255, "source_uint8": result.source}
    if result.overlap_pixels:
        out["source_indices"] = torch.tensor(result.source_views)
        out["overlap_pixels"] = torch.tensor(result.overlap_pixels)
        out["chunk_views"] = torch.tensor(result.chunk_views)
    return out


@runner("pipeline/render_scene.py project_source")
def run_project_source(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    inputs = {name: tensor.to(device) for name, tensor in case.inputs.items()}
    out = {}
    for frame, view in case.meta["pairs"]:
        one = slice(view, view + 1)
        result = render_per_frame(inputs["images"][one].permute(0, 3, 1, 2), inputs["depth"][one], inputs["intrinsics"][one],
                                  inputs["w2c"][one], inputs["target_w2c"][frame : frame + 1], inputs["intrinsics"][0])  # fmt: skip
        key = f"f{frame}_v{view}"
        # upstream leaves unknown pixels' rgb at 0 where render_per_frame writes -1: compared where known
        out[f"{key}/rgb"] = torch.where(result.mask[0], result.render[0], 0.0)
        out[f"{key}/depth"], out[f"{key}/known"] = result.depth[0], result.mask[0]
    return out


@runner("pipeline/render_scene.py select_chunk_top3")
def run_select_chunk_top3(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    choices, chunk_views = select_chunk_top3(case.inputs["overlap_pixels"].tolist())
    return {"choices": torch.tensor(choices), "chunk_views": torch.tensor(chunk_views)}
