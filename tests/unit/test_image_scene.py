"""An image job's geometry: DA3 jointly over the views (tiny random DA3), or the user's own, checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspatio_world.geometry.image_scene import estimate_image_scene, supplied_image_scene
from inspatio_world.media.image_inputs import ImageInputError
from inspatio_world.models.depth import DepthEstimator, DepthSettings
from inspatio_world.models.depth_checkpoint import build_network, network_config
from inspatio_world.pipeline.tiny_conditioning import TINY_DA3_PRESET
from inspatio_world.refusals import field_of

W, H = 56, 32


@pytest.fixture(scope="module")
def estimator() -> DepthEstimator:
    torch.manual_seed(0)
    return DepthEstimator(build_network(network_config(TINY_DA3_PRESET), "cpu"), DepthSettings(process_res=56, output_size=(W, H)))


@pytest.fixture(scope="module")
def views() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, H, W, 3), dtype=np.uint8)


def test_estimated_scene_has_one_map_k_and_pose_per_view_relative_to_view_0(estimator, views):
    scene = estimate_image_scene(views, estimator)
    assert scene.views == 4 and scene.size == (W, H)
    assert scene.depth.shape == (4, H, W) and scene.depth.dtype == np.float32 and (scene.depth > 0).all()
    assert scene.intrinsics.shape == (4, 3, 3) and np.allclose(scene.intrinsics[:, :2, 2], (W / 2, H / 2))
    assert scene.w2c.shape == (4, 4, 4) and np.allclose(scene.w2c[:, 3], (0, 0, 0, 1))
    rotations = scene.w2c[:, :3, :3]
    assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-5)


def test_poses_are_relative_to_view_0_and_not_smoothed_across_views(estimator, views):
    """Upstream's four-view example has view 0 exactly the identity: the time smoothing of videos
    (which would blend the four cameras) is not applied."""
    scene = estimate_image_scene(views, estimator)
    result = estimator.estimate(views)
    assert np.allclose(scene.w2c[0], np.eye(4), atol=1e-6)
    assert np.allclose(scene.w2c, np.linalg.inv(result.normalized_c2w.astype(np.float64)), atol=1e-5)
    smoothed = np.linalg.inv(result.smoothed_c2w)
    assert not np.allclose(scene.w2c, smoothed, atol=1e-3)


def test_the_views_are_estimated_jointly(estimator, views):
    """One pass over all views: changing view 3 changes view 0's depth (views attend to each other)."""
    alone = estimate_image_scene(views, estimator)
    changed = views.copy()
    changed[3] = 255 - changed[3]
    together = estimate_image_scene(changed, estimator)
    assert np.abs(together.depth[0] - alone.depth[0]).max() > 1e-4
    assert np.array_equal(estimate_image_scene(views, estimator).depth, alone.depth)  # and repeatably (seeded)


def test_one_view_is_its_own_world(estimator, views):
    scene = estimate_image_scene(views[:1], estimator)
    assert np.allclose(scene.w2c[0], np.eye(4), atol=1e-6)


def test_views_must_be_fitted_to_the_estimator_size_first(estimator, views):
    with pytest.raises(ValueError, match="fit them first"):
        estimate_image_scene(views[:, :, :40], estimator)


def _supplied(**change):
    views = np.zeros((4, 8, 12, 3), np.uint8)
    args = dict(depth=np.ones((4, 8, 12)), intrinsics=np.array([[10.0, 0, 6], [0, 10, 4], [0, 0, 1]]),
                w2c=np.tile(np.eye(4), (4, 1, 1)))  # fmt: skip
    args.update(change)
    return supplied_image_scene(views, **args)


def test_supplied_geometry_is_accepted_and_broadcast():
    scene = _supplied(w2c=np.tile(np.eye(4)[:3], (4, 1, 1)))  # 3x4 poses and one K for all views
    assert scene.intrinsics.shape == (4, 3, 3) and scene.w2c.shape == (4, 4, 4) and scene.depth.dtype == np.float32


@pytest.mark.parametrize("change, field, message", [
    (dict(depth=np.ones((4, 8, 11))), "depth", "one map per view"),
    (dict(depth=-np.ones((4, 8, 12))), "depth", ">= 0"),
    (dict(depth=np.concatenate([np.ones((3, 8, 12)), np.zeros((1, 8, 12))])), "depth", "positive somewhere in every view"),
    (dict(depth=np.full((4, 8, 12), np.nan)), "depth", "NaN"),
    (dict(intrinsics=np.eye(3)[:2]), "intrinsics", "must be"),
    (dict(intrinsics=np.diag([-1.0, 1.0, 1.0])), "intrinsics", "fx, fy > 0"),
    (dict(w2c=np.tile(np.eye(4), (3, 1, 1))), "poses", "world-to-camera"),
    (dict(w2c=np.tile(np.diag([1.0, 1.0, 2.0, 1.0]), (4, 1, 1))), "poses", "rigid"),
    (dict(w2c=np.tile(np.diag([1.0, 1.0, -1.0, 1.0]), (4, 1, 1))), "poses", "rigid"),
    (dict(w2c="not numbers"), "poses", "numbers"),
])  # fmt: skip
def test_supplied_geometry_is_checked(change, field, message):
    with pytest.raises(ImageInputError, match=message) as error:
        _supplied(**change)
    assert field_of(error.value) == field
