"""Parity runner for the dataset's frame schedule: time-freeze, alignment, adaptive frame count.

The case ran upstream's TestDataset.get_data on synthetic videos whose frame k holds the value k,
so the frames that came out are frame indices; here `plan_frames` gives them directly. The saved
target extrinsics are the inverse of the keyframe trajectory's c2w at the output length, with r
scaled by the first depth frame's minimum times radius_ratio.
"""

from __future__ import annotations

import torch

from ...geometry.frame_schedule import bounce_indices, plan_frames
from ...geometry.trajectory import load_trajectory, relative_c2w, total_angle
from ..case import ParityCase
from . import runner

# The case's synthetic pi3 depth: every pixel of frame 0 is the uint16 value 30000, metadata range
# [0.5, 3.0], dequantised as q / 65535 * (max - min) + min; radius_ratio is 1.
_DEPTH_QUANTIZED, _DEPTH_RANGE, _RADIUS_RATIO = 30000, (0.5, 3.0), 1.0


@runner("datasets/test_dataset.py TestDataset.get_data")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    low, high = _DEPTH_RANGE
    radius = (_DEPTH_QUANTIZED / 65535.0) * (high - low) + low
    radius *= _RADIUS_RATIO
    outputs: dict[str, torch.Tensor] = {}
    for spec in case.meta["runs"]:
        traj = load_trajectory(case.trajectory_file(spec["traj"]))
        plan = plan_frames(
            spec["n_source_frames"],
            spec["n_render_frames"],
            total_angle(traj),
            adaptive=True,
            freeze_repeat=spec["freeze_repeat"],
            freeze_frame=spec["freeze_frame"],
        )
        c2w = torch.from_numpy(relative_c2w(traj, len(plan), rotation_only=False, radius=radius))
        key = spec["key"]
        outputs[f"{key}/source_frame_index"] = torch.tensor(plan.source_index, dtype=torch.int64)
        outputs[f"{key}/render_frame_index"] = torch.tensor(plan.render_index, dtype=torch.int64)
        outputs[f"{key}/target_extrinsics"] = c2w.inverse()
    for name in case.outputs:
        if name.startswith("bounce_indices/"):
            n_source, n_target = (int(v) for v in name.split("/")[1].split("_"))
            outputs[name] = torch.tensor(bounce_indices(n_source, n_target), dtype=torch.int64)
    return outputs
