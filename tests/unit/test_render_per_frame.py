"""v1.5's render (geometry/warp_render.render_per_frame): each source frame unprojected with its own
intrinsics and pose, target K = frame 0's, validity depth > 0 and z > 0, soft z-buffer per frame."""

from __future__ import annotations

import torch

from inspatio_world.geometry.warp_render import render_per_frame

H, W = 12, 16


def _K(f: float = 10.0, cx: float = W / 2, cy: float = H / 2) -> torch.Tensor:
    return torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def _eye(n: int) -> torch.Tensor:
    return torch.eye(4).repeat(n, 1, 1)


def test_identity_cameras_give_back_each_frame_and_its_depth():
    frames = torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8)
    depths = torch.full((2, H, W), 3.0)
    out = render_per_frame(frames, depths, _K().repeat(2, 1, 1), _eye(2), _eye(2), _K())
    assert out.mask.all()
    assert torch.allclose(out.render, frames.float() / 127.5 - 1, atol=1e-5)
    assert torch.allclose(out.depth, depths, atol=1e-5)


def test_each_frame_is_unprojected_with_its_own_intrinsics():
    # One bright pixel in frame 1, whose focal length is twice frame 0's: reprojected with K_0
    # it moves halfway towards the principal point.
    frames = torch.zeros(2, 3, H, W)
    frames[1, :, 2, 4] = 1.0
    K = torch.stack([_K(10.0), _K(20.0)])
    out = render_per_frame(frames, torch.full((2, H, W), 2.0), K, _eye(2), _eye(2), _K(10.0))
    assert divmod(int(out.render[1, 0].argmax()), W) == (4, 6)  # y: 6 + (2 - 6) / 2, x: 8 + (4 - 8) / 2
    v1_like = render_per_frame(frames, torch.full((2, H, W), 2.0), _K(10.0).repeat(2, 1, 1), _eye(2), _eye(2), _K(10.0))
    assert divmod(int(v1_like.render[1, 0].argmax()), W) == (2, 4)


def test_pixels_without_depth_or_behind_the_target_never_splat():
    frames = torch.ones(1, 3, H, W)
    depths = torch.full((1, H, W), 2.0)
    depths[0, :, : W // 2] = 0.0  # no depth on the left half
    out = render_per_frame(frames, depths, _K()[None], _eye(1), _eye(1), _K())
    assert not out.mask[0, :, : W // 2 - 1].any() and out.mask[0, :, W // 2 + 1 :].all()
    assert (out.render[0][:, ~out.mask[0]] == -1).all() and (out.depth[0][~out.mask[0]] == 0).all()
    behind = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0]))[None]  # turned around: every z < 0
    assert not render_per_frame(frames, torch.full((1, H, W), 2.0), _K()[None], _eye(1), behind, _K()).mask.any()


def test_the_soft_z_buffer_scale_is_each_frames_own():
    # A frame rendered alone or next to a frame with far larger depths gives the same numbers
    # (v1 scales by the max over the whole video).
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, H, W), dtype=torch.uint8)
    depths = torch.rand(2, H, W) + 1.0
    depths[1] *= 100
    shift = _eye(2)
    shift[:, 0, 3] = 0.3
    together = render_per_frame(frames, depths, _K().repeat(2, 1, 1), _eye(2), shift, _K())
    alone = render_per_frame(frames[:1], depths[:1], _K()[None], _eye(1), shift[:1], _K())
    assert torch.equal(together.render[:1], alone.render) and torch.equal(together.mask[:1], alone.mask)
