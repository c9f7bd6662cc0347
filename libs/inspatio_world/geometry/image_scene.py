"""The geometry of an image job: its views with depth, intrinsics and poses, estimated or supplied.

* `estimate_image_scene`: Depth-Anything-3 over ALL views in one pass (the views attend to each
  other, so the four cameras come out in one world), as the community re-implementation does; the
  project's DA3 wrapper (models/depth.py) adds upstream's post-processing: depth nearest-resized to
  the output size, K scaled to it, poses relative to view 0. The poses are NOT smoothed over the
  views: the video path's Gaussian over time (sigma 2) would average four unrelated cameras into
  one. Upstream v1.5's own four-view example (examples/multiview_example_00/depth/source_tcw.txt)
  has view 0 exactly the identity and views turned by up to ~130 degrees, i.e. unsmoothed; the
  community re-implementation smooths them (a deviation of its own, not followed here). The views
  must already be fitted to the estimator's output size (media/image_inputs.py), so depth, K and
  pictures share one pixel grid.
* `supplied_image_scene`: the user's own depth, intrinsics and poses, checked (shapes, finite,
  depth >= 0 with some positive, focal lengths > 0, rigid poses) -> ImageInputError.

Layouts (OpenCV axes; world = the frame the poses are given in, view 0's camera for DA3):
  images uint8 [V, H, W, 3];  depth float32 [V, H, W];  intrinsics float32 [V, 3, 3];
  w2c float32 [V, 4, 4] world-to-camera.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..media.image_inputs import ImageInputError

if TYPE_CHECKING:
    from ..models.depth import DepthEstimator

ROTATION_ATOL = 1e-3


@dataclass(frozen=True, eq=False)
class ImageScene:
    images: np.ndarray  # uint8 [V, H, W, 3]
    depth: np.ndarray  # float32 [V, H, W]
    intrinsics: np.ndarray  # float32 [V, 3, 3]
    w2c: np.ndarray  # float32 [V, 4, 4]

    @property
    def views(self) -> int:
        return len(self.images)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every view."""
        return self.images.shape[2], self.images.shape[1]


def estimate_image_scene(images: np.ndarray, estimator: "DepthEstimator") -> ImageScene:
    """DA3 jointly over the views -> ImageScene (see the module docstring)."""
    images = np.asarray(images)
    size = tuple(estimator.settings.output_size)
    if images.shape[2:0:-1] != size:
        raise ValueError(f"views are {images.shape[2]}x{images.shape[1]}, the estimator writes {size[0]}x{size[1]}: fit them first")
    result = estimator.estimate(images)
    w2c = np.linalg.inv(result.normalized_c2w.astype(np.float64))  # relative to view 0, unsmoothed
    return ImageScene(images, np.array(result.depth, np.float32), np.array(result.intrinsics, np.float32), w2c.astype(np.float32))


def supplied_image_scene(images: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray, w2c: np.ndarray) -> ImageScene:
    """The user's depth [V, H, W], K [V, 3, 3] (or one [3, 3] for all views) and w2c [V, 4, 4] (or [V, 3, 4])."""
    images = np.asarray(images)
    views, height, width = images.shape[:3]
    depth = _finite(depth, "depth")
    if depth.shape != (views, height, width):
        raise ImageInputError(f"depth must be [{views}, {height}, {width}] (one map per view at the pictures' size), got {list(depth.shape)}", "depth")
    if (depth < 0).any() or not (depth > 0).any(axis=(1, 2)).all():
        raise ImageInputError("depth must be >= 0 everywhere and positive somewhere in every view", "depth")
    K = _finite(intrinsics, "intrinsics")
    K = np.broadcast_to(K, (views, 3, 3)).copy() if K.shape == (3, 3) else K
    if K.shape != (views, 3, 3):
        raise ImageInputError(f"intrinsics must be [3, 3] or [{views}, 3, 3], got {list(K.shape)}", "intrinsics")
    if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any() or not np.allclose(K[:, 2], (0, 0, 1)):
        raise ImageInputError("intrinsics must be pinhole matrices [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0", "intrinsics")
    poses = _finite(w2c, "poses")
    if poses.shape == (views, 3, 4):
        poses = np.concatenate([poses, np.tile([[[0.0, 0.0, 0.0, 1.0]]], (views, 1, 1))], axis=1)
    if poses.shape != (views, 4, 4) or not np.allclose(poses[:, 3], (0, 0, 0, 1)):
        raise ImageInputError(f"poses must be [{views}, 4, 4] world-to-camera matrices with last row 0 0 0 1, got {list(np.shape(w2c))}", "poses")
    rotation = poses[:, :3, :3]
    error = np.abs(rotation.transpose(0, 2, 1) @ rotation - np.eye(3)).max()
    if error > ROTATION_ATOL or (np.linalg.det(rotation) <= 0).any():
        raise ImageInputError(f"poses must be rigid (proper orthonormal rotations; max |R^T R - I| = {error:.2g})", "poses")
    return ImageScene(images, depth.astype(np.float32), K.astype(np.float32), poses.astype(np.float32))


def _finite(values, field: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ImageInputError(f"{field} must be numbers", field) from None
    if not np.isfinite(array).all():
        raise ImageInputError(f"{field} contains NaN or infinite values", field)
    return array
