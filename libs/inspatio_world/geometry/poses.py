"""DA3 camera post-processing and intrinsics scaling.

Conventions: OpenCV camera axes (x right, y down, z forward). DA3 returns world-to-camera ("w2c")
3x4 matrices [N, 3, 4]; c2w is its inverse. Intrinsics K are 3x3 pixel matrices [[fx, 0, cx],
[0, fy, cy], [0, 0, 1]].

What the depth step writes to extrinsic.txt (`postprocess_da3_poses`):
  C_i = inv([E_i; 0 0 0 1]);  P_i = inv(C_0) C_i  (so P_0 = I);  S = smooth_gaussian(P, sigma=2);
  extrinsic.txt holds inv(S_i)[:3]  (w2c, 3x4).
What the renderer reads back (`source_c2w_from_w2c`): float32 inv of each padded w2c.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

POSE_SMOOTHING_SIGMA = 2.0


def postprocess_da3_poses(w2c_3x4: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DA3 w2c [N, 3, 4] -> (normalised c2w [N, 4, 4] in the input dtype (float32 from DA3),
    smoothed c2w [N, 4, 4] float64, extrinsic.txt w2c [N, 3, 4] float64).

    No ground-plane alignment: InSpatio never provides a ground mask, so upstream's ground_rt is I.
    """
    w2c_3x4 = np.asarray(w2c_3x4)
    w2c = np.zeros((len(w2c_3x4), 4, 4), dtype=w2c_3x4.dtype)
    w2c[:, :3, :] = w2c_3x4
    w2c[:, 3, 3] = 1.0
    c2w = np.linalg.inv(w2c)
    normalized = np.linalg.inv(c2w[0]) @ c2w
    try:
        smoothed = smooth_gaussian(normalized, sigma=POSE_SMOOTHING_SIGMA)
    except ValueError:  # upstream falls back to the raw poses when smoothing fails (e.g. a reflection)
        smoothed = normalized.astype(np.float64)
    return normalized, smoothed, np.linalg.inv(smoothed)[:, :3, :]


def smooth_gaussian(poses: np.ndarray, sigma: float = POSE_SMOOTHING_SIGMA) -> np.ndarray:
    """Gaussian-smooth c2w poses [N, 4, 4] along time -> float64 [N, 4, 4].

    Each quaternion component (scipy xyzw) and each translation component is filtered separately
    (gaussian_filter1d, mode reflect, truncate 4), then the quaternions are renormalised.
    WHY no sign-continuity fix: upstream has none, so a quaternion flipping sign between frames
    smooths through zero; kept for parity. Translations are filtered in the input dtype (float32
    for DA3 poses) because scipy keeps it.
    """
    poses = np.asarray(poses)
    quats = Rotation.from_matrix(poses[:, :3, :3]).as_quat()
    quats = gaussian_filter1d(quats, sigma=sigma, axis=0)
    quats = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    translations = gaussian_filter1d(poses[:, :3, 3], sigma=sigma, axis=0)
    smoothed = np.tile(np.eye(4), (len(poses), 1, 1))
    smoothed[:, :3, :3] = Rotation.from_quat(quats).as_matrix()
    smoothed[:, :3, 3] = translations
    return smoothed


def source_c2w_from_w2c(w2c_3x4: np.ndarray | torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """extrinsic.txt's w2c [N, 3, 4] -> source c2w [N, 4, 4] float32, as the renderer reads it
    (cast to float32 first, then each padded matrix inverted in float32)."""
    w2c = torch.as_tensor(np.asarray(w2c_3x4, dtype=np.float32), device=device)
    bottom = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float32, device=device)
    return torch.stack([torch.linalg.inv(torch.cat([m, bottom])) for m in w2c])


def scale_intrinsics_to(K: np.ndarray, processing_size: tuple[int, int], out_w: int = 832, out_h: int = 480) -> np.ndarray:
    """K [..., 3, 3] at DA3's processing size (w, h) -> K at (out_w, out_h): row 0 scaled by out_w / w,
    row 1 by out_h / h, in K's dtype (what intrinsic.txt holds)."""
    w, h = processing_size
    scaled = np.array(K, copy=True)
    scaled[..., 0, :] *= out_w / w
    scaled[..., 1, :] *= out_h / h
    return scaled


def scale_intrinsic(K: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The renderer's K adjustment: fx, fy scaled by width / (2 cx), height / (2 cy); principal point
    set to the image centre. The identity for intrinsic.txt's K (cx = 416, cy = 240 at 832x480)."""
    scale_x = width / (K[0, 2].item() * 2)
    scale_y = height / (K[1, 2].item() * 2)
    scaled = K.clone()
    scaled[0, 0] *= scale_x
    scaled[1, 1] *= scale_y
    scaled[0, 2] = width / 2.0
    scaled[1, 2] = height / 2.0
    return scaled
