"""Parity runner: trajectory files -> resampled keyframes, relative poses and the renderer's target poses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ...geometry.poses import source_c2w_from_w2c
from ...geometry.trajectory import (
    KeyframeTrajectory,
    load_trajectory,
    relative_c2w,
    resample_keyframes,
    target_c2ws,
)
from ..case import CaseError, ParityCase
from . import runner

_DATASET_KEY = re.compile(r"^(?P<traj>[^/]+)/dataset_target_extrinsics_N(?P<n>\d+)_radius(?P<radius>[\d.]+)$")


@runner("datasets/utils.py txt_interpolation")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    sources = source_c2w_from_w2c(case.inputs["source_w2c_3x4"].numpy(), device)
    trajectories = {}
    out: dict[str, torch.Tensor] = {}
    for spec in case.meta["runs"]:
        name = Path(spec["traj"]).stem
        traj = trajectories.setdefault(name, _load(case, spec["traj"]))
        n, rot, rel = int(spec["N"]), bool(spec["rotation_only"]), bool(spec["relative_to_source"])
        prefix = f"{name}/N{n}"
        out[f"{prefix}/source_c2w"] = sources[:n]
        for line, values in zip(("pitch", "yaw", "r"), (traj.pitch, traj.yaw, traj.r)):
            out[f"{prefix}/interp_{line}"] = torch.from_numpy(resample_keyframes(values, n))  # no r pinning
        out[f"{prefix}/rot{int(rot)}/relative_c2w"] = torch.from_numpy(relative_c2w(traj, n, rotation_only=rot))
        out[f"{prefix}/rot{int(rot)}/rel{int(rel)}/target_c2w"] = target_c2ws(traj, sources[:n], rot, rel)
    for key in case.outputs:
        match = _DATASET_KEY.match(key)
        if match:  # the dataset's saved target_extrinsics: torch.inverse of the radius-scaled relative poses
            poses = relative_c2w(trajectories[match["traj"]], int(match["n"]), radius=float(match["radius"]))
            out[key] = torch.linalg.inv(torch.from_numpy(poses))
    return out


def _load(case: ParityCase, name: str) -> KeyframeTrajectory:
    path = case.trajectory_file(name)
    traj = load_trajectory(path)
    if not isinstance(traj, KeyframeTrajectory):
        raise CaseError(f"{case.name}: {path.name} is not a keyframe trajectory")
    stem = Path(name).stem
    for line, values in zip(("pitch", "yaw", "r"), (traj.pitch, traj.yaw, traj.r)):
        given = case.inputs.get(f"{stem}/keyframes_{line}")
        if given is not None and not np.array_equal(given.numpy(), np.asarray(values)):
            raise CaseError(f"{case.name}: {path.name} {line} keyframes differ from the case's inputs")
    return traj
