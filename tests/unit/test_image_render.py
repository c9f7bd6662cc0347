"""The conditioning of an image job: fused render, mask and the source stream per latent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspatio_world.geometry.image_scene import ImageScene
from inspatio_world.stages.image_render import render_image_conditioning

H, W = 12, 20


def _scene(views: int, depths=None) -> ImageScene:
    rng = np.random.default_rng(views)
    images = rng.integers(0, 256, (views, H, W, 3), dtype=np.uint8)
    depth = np.stack([np.full((H, W), d, np.float32) for d in (depths or [2.0] * views)])
    K = np.tile(np.array([[16.0, 0, W / 2], [0, 16, H / 2], [0, 0, 1]], np.float32), (views, 1, 1))
    w2c = np.tile(np.eye(4, dtype=np.float32), (views, 1, 1))
    w2c[:, 0, 3] = np.linspace(0, 0.3, views)  # cameras side by side
    return ImageScene(images, depth, K, w2c)


def _targets(frames: int, shift: float = 0.0) -> torch.Tensor:
    w2c = torch.eye(4).repeat(frames, 1, 1)
    w2c[:, 0, 3] = torch.linspace(0, shift, frames)
    return w2c


def test_one_view_from_its_own_camera_renders_the_picture_and_repeats_it_as_source():
    scene = _scene(1)
    result = render_image_conditioning(scene, _targets(5))
    assert result.render.shape == (5, H, W, 3) and result.render.dtype == torch.uint8
    assert result.mask.all()
    expected = torch.from_numpy(scene.images[0]).float()
    assert (result.render.float() - expected).abs().max() <= 1  # the 8-bit round trip truncates
    assert torch.equal(result.source, torch.from_numpy(scene.images[[0] * 5]))
    assert result.source_views == [0, 0] and result.overlap_pixels == [] and result.chunk_views == []


def test_moving_camera_opens_holes_at_the_border():
    result = render_image_conditioning(_scene(1), _targets(5, shift=0.5))
    assert result.mask[0].all() and not result.mask[-1].all()
    holes = ~result.mask[-1]
    assert (result.render[-1][holes] == 0).all()  # holes are black in the 8-bit render


def test_the_nearest_view_wins_everywhere_it_is_seen():
    """View 1 sits in front (depth 1) of the others (depth 5): seen from view 1's own camera, the
    fused render is exactly view 1's picture."""
    scene = _scene(4, depths=[5.0, 1.0, 5.0, 5.0])
    target = torch.from_numpy(scene.w2c[1]).repeat(9, 1, 1)
    result = render_image_conditioning(scene, target)
    assert result.mask.all()
    assert (result.render.float() - torch.from_numpy(scene.images[1]).float()).abs().max() <= 1


def test_four_views_anchor_each_latent_on_a_chosen_view():
    scene = _scene(4)
    result = render_image_conditioning(scene, _targets(21, shift=0.3))
    assert len(result.source_views) == 6 and len(result.chunk_views) == 2
    assert all(len(set(result.source_views[b : b + 3])) == 3 for b in (0, 3))
    groups = [range(0, 1)] + [range(s, s + 4) for s in range(1, 21, 4)]
    for group, view in zip(groups, result.source_views):
        for frame in group:
            assert np.array_equal(result.source[frame].numpy(), scene.images[view])
    assert len(result.overlap_pixels) == 6 and result.overlap_pixels[0][0] == H * W  # view 0 covers frame 0 wholly


def test_four_views_need_whole_blocks():
    with pytest.raises(ValueError, match="whole blocks of 3 latents"):
        render_image_conditioning(_scene(4), _targets(13))
    with pytest.raises(ValueError, match="at least one target camera"):
        render_image_conditioning(_scene(1), _targets(0))


def test_a_stop_request_ends_the_render_between_frames():
    calls = []

    def should_stop():
        calls.append(1)
        if len(calls) == 3:
            raise InterruptedError("stop")

    with pytest.raises(InterruptedError):
        render_image_conditioning(_scene(1), _targets(9), should_stop=should_stop)
    assert len(calls) == 3
