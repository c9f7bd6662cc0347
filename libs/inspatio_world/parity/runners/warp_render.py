"""Parity runner: the warper render step (freeze, target poses, forward splat, 8-bit frames)."""

from __future__ import annotations

import numpy as np
import torch

from ...geometry.poses import scale_intrinsic, source_c2w_from_w2c
from ...geometry.trajectory import load_trajectory, target_c2ws
from ...geometry.frame_schedule import freeze_indices
from ...geometry.warp_render import mask_to_uint8, render_to_uint8, warp_render
from ..case import ParityCase
from . import runner


@runner("scripts/render_point_cloud.py render_point_cloud_warper")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    args = case.meta["args"]
    width, height = int(args["width"]), int(args["height"])
    frames = case.inputs["frames_rgb_uint8"].permute(0, 3, 1, 2).to(device)  # [N, 3, H, W] uint8
    depths = case.inputs["depth"].to(device)
    # intrinsic.txt is read as float64 text and cast to float32, as the renderer does
    K = scale_intrinsic(torch.from_numpy(case.inputs["intrinsic_K"].numpy().astype(np.float32)).to(device), width, height)
    sources = source_c2w_from_w2c(case.inputs["source_w2c_3x4"].numpy(), device)

    order = torch.tensor(freeze_indices(len(frames), int(args.get("freeze_repeat") or 0), args.get("freeze_frame")), device=device)
    frames, depths, sources = frames[order], depths[order], sources[order]

    traj = load_trajectory(case.trajectory_file(args["trajectory"]))
    targets = target_c2ws(traj, sources, bool(args["rotation_only"]), bool(args["relative_to_source"]))
    render, mask = warp_render(frames, depths, K, sources, targets)
    return {
        "render": render,
        "mask": mask,
        "target_c2w": targets,
        "render_uint8": render_to_uint8(render),
        "mask_uint8": mask_to_uint8(mask),
    }
