"""Parity runner: DA3 w2c poses -> frame-0 normalised c2w, Gaussian-smoothed c2w, extrinsic.txt w2c."""

from __future__ import annotations

import torch

from ...geometry.poses import postprocess_da3_poses
from ..case import ParityCase
from . import runner


@runner("depth/depth_predict_da3.py DepthPredictDA3.run pose post-processing")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    normalized, smoothed, extrinsic = postprocess_da3_poses(case.inputs["da3_w2c_3x4"].numpy())
    return {
        "normalized_c2w": torch.from_numpy(normalized),
        "smoothed_c2w": torch.from_numpy(smoothed),
        "extrinsic_txt_w2c_3x4": torch.from_numpy(extrinsic),
    }
