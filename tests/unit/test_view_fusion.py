"""Nearer-wins fusion of per-view renders (upstream v1.5's multi-image loop)."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.geometry.view_fusion import fuse_nearest


def _views(depths, knowns):
    v = len(depths)
    rgb = torch.stack([torch.full((3, 1, len(depths[0])), float(i) / 10) for i in range(v)])  # view i has colour i/10
    return rgb, torch.tensor(knowns, dtype=torch.bool)[:, None], torch.tensor(depths, dtype=torch.float32)[:, None]


def test_nearest_known_view_wins_per_pixel_and_holes_are_minus_one():
    rgb, known, depth = _views(
        depths=[[2.0, 1.0, 3.0, 9.0, 0.0], [1.0, 2.0, 3.0, 0.5, 0.0], [0.1, 5.0, 3.0, 9.0, 0.0]],
        knowns=[[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [0, 1, 1, 1, 0]],
    )
    fused = fuse_nearest(rgb, known, depth)
    # pixel 0: view 2 is nearest but does not know it -> view 1; pixel 2: a three-way tie -> view 0;
    # pixel 3: view 1 is nearest but unknown -> views 0 and 2 tie at 9 -> view 0; pixel 4: a hole
    assert fused.rgb[0, 0].tolist() == pytest.approx([0.1, 0.0, 0.0, 0.0, -1.0])
    assert fused.mask[0].tolist() == [True, True, True, True, False]
    assert fused.view_pixels.tolist() == [4, 3, 3]


def test_one_view_passes_through():
    rgb, known, depth = _views([[1.0, 2.0]], [[1, 0]])
    fused = fuse_nearest(rgb, known, depth)
    assert fused.rgb[:, 0].tolist() == [[0.0, -1.0]] * 3 and fused.view_pixels.tolist() == [1]


def test_shapes_are_checked():
    rgb, known, depth = _views([[1.0, 2.0]], [[1, 0]])
    with pytest.raises(ValueError, match="expected rgb"):
        fuse_nearest(rgb[:, :2], known, depth)
    with pytest.raises(ValueError, match="expected rgb"):
        fuse_nearest(rgb, known, depth[:, :, :1])
