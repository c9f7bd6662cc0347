"""Parity runners for v1.5's conditioning (tests/parity/v1_5, tools/parity_cases/make_v15_cases.py):
per-frame render, uint16 depth, frame padding, centre crop."""

from __future__ import annotations

import torch

from ...geometry.frame_schedule import pad_indices, padded_frame_count
from ...geometry.warp_render import render_per_frame, render_to_uint8
from ...media.centre_crop import centre_crop
from ...media.depth_uint16 import uint16_round_trip
from ..case import ParityCase
from . import runner


@runner("v1.5 pipeline/render_scene.py prepare_source + project_source")
def render(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    inputs = {name: tensor.to(device) for name, tensor in case.inputs.items()}
    out = render_per_frame(inputs["frames_rgb_uint8"].permute(0, 3, 1, 2), inputs["depth"], inputs["source_K"],
                           inputs["source_w2c"], inputs["target_w2c"], inputs["source_K"][0])  # fmt: skip
    return {"render": out.render, "mask": out.mask, "depth": out.depth, "render_uint8": render_to_uint8(out.render)}


@runner("v1.5 datasets/scene_depth_io.py")
def depth_uint16(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    return {"decoded": uint16_round_trip(case.inputs["depth"].to(device))}


@runner("v1.5 pipeline/scene_schema.py padded_frame_count")
def padding(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    counts = case.inputs["counts"].tolist()
    outputs = {"padded_frame_count": torch.tensor([padded_frame_count(n) for n in counts], dtype=torch.int64)}
    for name in case.outputs:
        kind, _, valid = name.partition("/")
        if kind == "frame_index":
            outputs[name] = torch.tensor(pad_indices(int(valid)), dtype=torch.int64)
        elif kind == "chunk_sizes":  # the Wan VAE's grouping of the padded clip: frame 0, then fours
            padded = padded_frame_count(int(valid))
            outputs[name] = torch.tensor([1] + [4] * ((padded - 1) // 4), dtype=torch.int64)
    return outputs


@runner("v1.5 run_scene_inference.py materialize_direct_video")
def crop(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    size = tuple(case.meta["size"])
    return {name: centre_crop(image[None], size)[0].to(torch.float32) for name, image in case.inputs.items()}
