"""Forward-warp renderer: reprojection, holes, soft z-buffer, block-wise rendering, freeze, 8-bit output."""

from __future__ import annotations

import torch

from inspatio_world.geometry.trajectory import KeyframeTrajectory, target_c2ws
from inspatio_world.geometry.warp_render import (
    log_depth_max,
    mask_to_uint8,
    render_to_uint8,
    warp_render,
)

H, W = 12, 20


def _K(f: float = 17.3) -> torch.Tensor:
    return torch.tensor([[f, 0, W / 2], [0, f * 1.1, H / 2], [0, 0, 1]])


def _shifted(n: int, dx: float) -> torch.Tensor:
    poses = torch.eye(4).repeat(n, 1, 1)
    poses[:, 0, 3] = dx
    return poses


def _random_video(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(n, 3, H, W, generator=g) * 2 - 1
    depths = 1.0 + 4.0 * torch.rand(n, H, W, generator=g)
    return frames, depths


def test_flat_plane_from_the_same_camera_reproduces_the_image():
    frames, _ = _random_video(2)
    depths = torch.full((2, H, W), 3.0)
    render, mask = warp_render(frames, depths, _K(), torch.eye(4).repeat(2, 1, 1), torch.eye(4).repeat(2, 1, 1))
    assert render.shape == (2, 3, H, W) and mask.shape == (2, 1, H, W)
    assert torch.all(mask[..., 1:-1, 1:-1] == 1)
    assert torch.allclose(render[..., 1:-1, 1:-1], frames[..., 1:-1, 1:-1], atol=1e-4)


def test_exact_landing_spots_reproduce_exactly():
    # fx = 16, integral centre, depth 2: every pixel lands exactly on itself, where upstream's quirk
    # gives that one pixel all four weights; so even the border pixels come back
    frames, _ = _random_video(1)
    K = torch.tensor([[16.0, 0, 10], [0, 16.0, 6], [0, 0, 1]])
    render, mask = warp_render(frames, torch.full((1, H, W), 2.0), K, torch.eye(4)[None], torch.eye(4)[None])
    assert torch.allclose(render, frames, atol=1e-6) and torch.all(mask == 1)


def test_sideways_move_leaves_holes_at_the_edge():
    frames, depths = _random_video(1)
    # the target camera 0.5 to the right: the scene slides left, the right edge has no source
    render, mask = warp_render(frames, depths.clamp(max=2.0), _K(), torch.eye(4)[None], _shifted(1, 0.5))
    assert torch.all(mask[..., -2:] == 0) and torch.all(render[..., -2:] == -1)
    assert mask[..., : W // 2].mean() > 0.9
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_near_surface_wins_the_soft_z_buffer():
    frames = torch.full((1, 3, H, W), -0.5)
    depths = torch.full((1, H, W), 10.0)
    frames[..., 8:12], depths[..., 8:12] = 1.0, 1.0  # a near white strip in front of a far grey wall
    K = torch.tensor([[16.0, 0, W / 2], [0, 16.0, H / 2], [0, 0, 1]])
    render, _ = warp_render(frames, depths, K, torch.eye(4)[None], _shifted(1, 0.5))
    # the strip shifts 8 px left (the wall 0.8 px) and lands on wall pixels: the strip must win there
    assert torch.all(render[..., 1:3] > 0.99)


def test_blockwise_rendering_equals_the_whole_video():
    n = 7
    frames, depths = _random_video(n, seed=1)
    sources = _shifted(n, 0.0)
    sources[:, 2, 3] = torch.linspace(0, 0.6, n)
    targets = target_c2ws(KeyframeTrajectory((0, 10, -5), (0, 15, 5), (1, 2)), sources, False, True)
    K = _K()
    whole = warp_render(frames, depths, K, sources, targets, chunk_frames=3)
    assert torch.equal(whole[0], warp_render(frames, depths, K, sources, targets, chunk_frames=n)[0])

    depth_max = log_depth_max(depths, K, sources, targets)
    blocks = [slice(0, 2), slice(2, 5), slice(5, 7)]
    parts = [warp_render(frames[b], depths[b], K, sources[b], targets[b], depth_max=depth_max) for b in blocks]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
    # without the global Lmax a block's soft z-buffer differs
    alone = warp_render(frames[blocks[0]], depths[blocks[0]], K, sources[blocks[0]], targets[blocks[0]])
    assert not torch.equal(alone[0], whole[0][blocks[0]])


def test_uint8_frames_are_mapped_like_upstream():
    g = torch.Generator().manual_seed(3)
    rgb = torch.randint(0, 256, (2, 3, H, W), generator=g, dtype=torch.uint8)
    _, depths = _random_video(2)
    poses, targets = torch.eye(4).repeat(2, 1, 1), _shifted(2, 0.1)
    as_uint8 = warp_render(rgb, depths, _K(), poses, targets)
    as_float = warp_render(rgb.float() / 127.5 - 1, depths, _K(), poses, targets)
    assert torch.equal(as_uint8[0], as_float[0])


def test_eight_bit_conversion_truncates():
    render = torch.tensor([-1.0, -0.999, 0.0, 0.999, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert render_to_uint8(render)[0, 0, :, 0].tolist() == [0, 0, 127, 254, 255]
    mask = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
    converted = mask_to_uint8(mask)
    assert converted.shape == (1, 1, 2, 1) and converted.flatten().tolist() == [0, 255]
