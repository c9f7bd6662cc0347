"""DA3 pose post-processing and intrinsics scaling."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from inspatio_world.geometry.poses import (
    postprocess_da3_poses,
    scale_intrinsic,
    scale_intrinsics_to,
    smooth_gaussian,
    source_c2w_from_w2c,
)


def _camera_path(n: int, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """c2w [n, 4, 4] float64: a slow turn and a walk forward, optionally jittered."""
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.from_euler("y", np.linspace(0, 20, n)[:, None], degrees=True).as_matrix()
    c2w[:, :3, 3] = np.stack([np.zeros(n), np.zeros(n), np.linspace(0, 2, n)], 1) + jitter * rng.standard_normal((n, 3))
    return c2w


def test_postprocess_normalises_to_frame_zero_and_writes_w2c():
    world_from_first = np.eye(4)
    world_from_first[:3, :3] = Rotation.from_euler("xyz", [10, -30, 5], degrees=True).as_matrix()
    world_from_first[:3, 3] = [1.0, -2.0, 0.5]
    c2w = world_from_first @ _camera_path(12)
    w2c = np.linalg.inv(c2w)[:, :3, :].astype(np.float32)

    normalized, smoothed, extrinsic = postprocess_da3_poses(w2c)
    assert normalized.dtype == np.float32 and smoothed.dtype == np.float64 and extrinsic.shape == (12, 3, 4)
    assert np.allclose(normalized[0], np.eye(4), atol=1e-6)
    assert np.allclose(normalized, _camera_path(12), atol=1e-5)  # the arbitrary DA3 world frame is gone
    assert np.allclose(extrinsic, np.linalg.inv(smoothed)[:, :3, :])
    assert not np.array_equal(smoothed[0], np.eye(4))  # smoothing moves frame 0 off the identity


def test_smoothing_keeps_a_static_camera_and_damps_jitter():
    still = np.tile(_camera_path(3)[1], (10, 1, 1))
    assert np.allclose(smooth_gaussian(still), still, atol=1e-12)
    noisy = _camera_path(40, jitter=0.05)
    smooth = smooth_gaussian(noisy, sigma=2.0)
    clean = _camera_path(40)
    interior = slice(8, 32)  # away from the reflected ends
    err_noisy = np.abs(noisy[interior, :3, 3] - clean[interior, :3, 3]).mean()
    err_smooth = np.abs(smooth[interior, :3, 3] - clean[interior, :3, 3]).mean()
    assert err_smooth < 0.5 * err_noisy
    rotations = smooth[:, :3, :3]
    assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-12)


def test_intrinsics_to_output_size():
    K = np.array([[300.0, 0, 252.0], [0, 310.0, 147.0], [0, 0, 1]], dtype=np.float32)  # DA3 at 504x294
    scaled = scale_intrinsics_to(K, (504, 294))
    assert scaled.dtype == np.float32
    assert np.allclose(scaled, [[300 * 832 / 504, 0, 416], [0, 310 * 480 / 294, 240], [0, 0, 1]])
    assert np.array_equal(K[0], [300.0, 0, 252.0])  # input untouched


def test_renderer_intrinsic_recentres():
    centred = torch.tensor([[500.0, 0, 416], [0, 510.0, 240], [0, 0, 1]])
    assert torch.equal(scale_intrinsic(centred, 832, 480), centred)
    off_centre = torch.tensor([[500.0, 0, 400], [0, 510.0, 250], [0, 0, 1]])
    scaled = scale_intrinsic(off_centre, 832, 480)
    assert torch.allclose(scaled, torch.tensor([[520.0, 0, 416], [0, 489.6, 240], [0, 0, 1]]))


def test_source_c2w_inverts_the_w2c():
    c2w = _camera_path(4)
    source = source_c2w_from_w2c(np.linalg.inv(c2w)[:, :3, :])
    assert source.dtype == torch.float32 and torch.allclose(source.double(), torch.from_numpy(c2w), atol=1e-6)
