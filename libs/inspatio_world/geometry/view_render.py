"""One source view splatted into one target camera, as upstream v1.5 renders (`prepare_source` +
`project_source` in pipeline/render_scene.py).

v1.5 renders every source picture on its own -- an image view, or one frame of a video -- with that
picture's OWN intrinsics and pose, into a target camera whose K is the first picture's:

    p   = depth(x, y) * K_src^-1 [x, y, 1]          (source camera coords, integer pixel grid)
    P'  = (w2c_tgt @ inv(w2c_src)) [p; 1]           (target camera coords)
    q   = K_tgt P'[:3];  u, v = q_xy / max(q_z, 1e-6);  z = q_z

then the soft z-buffered bilinear splat of warp_render.py, with three differences from v1's video
render: no depth clipping, a source pixel counts only where depth > 0 and z > 0, and the z-buffer's
scale max log(1 + z) is taken over this one (view, frame) pair. The splat carries z as a fourth
channel, so the result has the target depth the fusion of several views compares
(geometry/view_fusion.py).

Layouts (OpenCV axes; float32 on the device of the inputs):
  image   uint8 [H, W, 3] RGB, or float [3, H, W] in [-1, 1]
  depth   [H, W] source-camera z;  K [3, 3];  w2c [4, 4] world-to-camera
  ViewRender: rgb [3, H, W] in [-1, 1] (0 where unknown), known bool [H, W], depth [H, W] (0 where unknown)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .warp_render import _log_depth, splat_average

MIN_Z = 1e-6  # upstream divides by z clamped here


@dataclass(frozen=True)
class LiftedView:
    """A source picture lifted once to camera-frame points; render it into any number of targets."""

    colour: torch.Tensor  # [3, H, W] float32 in [-1, 1]
    depth: torch.Tensor  # [H, W] float32
    camera_to_world: torch.Tensor  # [4, 4] float32, inv(w2c)
    points: torch.Tensor  # [H, W, 4, 1] homogeneous camera-frame points


@dataclass(frozen=True)
class ViewRender:
    rgb: torch.Tensor  # [3, H, W] in [-1, 1], 0 where unknown
    known: torch.Tensor  # [H, W] bool
    depth: torch.Tensor  # [H, W] splatted target z, 0 where unknown


def lift_view(image: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, w2c: torch.Tensor) -> LiftedView:
    """Lift every pixel of a source picture with its depth and its own K."""
    depth = torch.as_tensor(depth).to(torch.float32)
    device = depth.device
    colour = _unit_range(torch.as_tensor(image).to(device))
    h, w = depth.shape
    if colour.shape != (3, h, w):
        raise ValueError(f"image {tuple(colour.shape)} does not match depth {(h, w)}")
    K = torch.as_tensor(K).to(device=device, dtype=torch.float32)
    w2c = torch.as_tensor(w2c).to(device=device, dtype=torch.float32)
    grid = _pixel_grid(h, w, device)  # [2, H, W] (x, y)
    pixels = torch.cat([grid, torch.ones_like(grid[:1])]).permute(1, 2, 0)[..., None]  # [H, W, 3, 1]
    # WHY these shapes: upstream's matmul broadcasting, kept so CPU results match it bit for bit
    rays = torch.matmul(torch.linalg.inv(K[None])[:, None, None], pixels[None])  # [1, H, W, 3, 1]
    local = rays * depth[None, :, :, None, None]
    local = torch.cat([local, torch.ones_like(local[..., :1, :])], dim=3)
    return LiftedView(colour, depth, torch.linalg.inv(w2c[None]), local)


def render_view(view: LiftedView, target_w2c: torch.Tensor, target_K: torch.Tensor) -> ViewRender:
    """Splat a lifted view into one target camera (see the module docstring)."""
    device = view.depth.device
    target_w2c = torch.as_tensor(target_w2c).to(device=device, dtype=torch.float32)[None]
    target_K = torch.as_tensor(target_K).to(device=device, dtype=torch.float32)[None]
    transform = torch.bmm(target_w2c, view.camera_to_world)[:, None, None]
    moved = torch.matmul(transform, view.points)[..., :3, :]
    projected = torch.matmul(target_K[:, None, None], moved)
    z = projected[..., 2, 0]  # [1, H, W]
    uv = projected[..., :2, 0] / z.clamp_min(MIN_Z).unsqueeze(-1)
    grid = _pixel_grid(*view.depth.shape, device)[None]
    position = (uv.permute(0, 3, 1, 2) - grid) + grid + 1  # upstream's flow field, (u - x) + x, then the canvas offset
    valid = ((view.depth[None] > 0) & (z > 0)).unsqueeze(1).float()
    values = torch.cat([view.colour[None], z.unsqueeze(1)], dim=1)
    average, known = splat_average(values, position, z, _log_depth(z).max(), valid)
    return ViewRender(average[0, :3].clamp(-1, 1), known[0, 0], average[0, 3])


def _pixel_grid(h: int, w: int, device: torch.device) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                          torch.arange(w, device=device, dtype=torch.float32), indexing="ij")  # fmt: skip
    return torch.stack([x, y])


def _unit_range(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:  # [H, W, 3] RGB
        return image.permute(2, 0, 1).float() / 127.5 - 1
    return image.to(torch.float32)
