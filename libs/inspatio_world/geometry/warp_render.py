"""Point-cloud forward-warp renderer (upstream's default "warper" backend), in torch float32.

Every source pixel is lifted to 3D with its depth, moved into the target camera, projected, and
splatted bilinearly with a soft z-buffer; pixels nothing lands on are holes.

Layouts and conventions (OpenCV camera axes: x right, y down, z forward):
  frames      [N, 3, H, W] float32 in [-1, 1], or uint8 RGB (mapped by v / 127.5 - 1 chunk by chunk)
  depths      [N, H, W] float32 source-camera z, clipped to [1e-4, 1e4] here as upstream's loader does
  K           [3, 3] render-size intrinsics; frame 0's K serves every frame
  source_c2w  [N, 4, 4] float32 camera-to-world of the source cameras (inverse of extrinsic.txt's w2c)
  target_c2w  [N, 4, 4] float32 camera-to-world of the target cameras (trajectory.target_c2ws)
  render      [N, 3, H, W] float32 in [-1, 1], holes -1
  mask        [N, 1, H, W] float32, 1 where something was splatted, 0 for holes

Soft z-buffer: a splat's weight is divided by exp(50 log(1 + z) / Lmax), z the target-camera depth
clamped to [0, 1000]. Lmax is the max of log(1 + z) over ALL frames and pixels of the video, so a
video rendered block by block must first compute it over the whole video (`log_depth_max`) and pass
it to every block; frames are independent otherwise. Work is done `chunk_frames` frames at a time
to bound memory; `iter_warp_render` also lets the caller stream the output.

On CPU the accumulation (index_put_ with accumulate) is sequential and this reproduces upstream bit
for bit. On CUDA the sums use atomics (index_add_; order varies between runs) and matmuls round differently, so
a rare splat lands one pixel over: on an H100, 81 frames at 480x832 differed from CPU in 3 of 1.6M
mask pixels and in a few render pixels.

v1.5's render (`render_per_frame`, upstream v1.5 pipeline/render_scene.py prepare_source + project_source)
is the same splat with four differences: each source frame is unprojected with its OWN intrinsics
(target K = source frame 0's), cameras come as world-to-camera matrices (no inversion of c2w), depth
is not clipped and only source pixels with depth > 0 landing at z > 0 count, the projection divides
by z.clamp_min(1e-6), and the soft z-buffer's scale is each frame's own (frames are independent, so
no whole-video pass first). It also returns the splatted target depth (0 in holes), which multi-view
fusion needs. Rows are independent, so V views rendered into one target camera = V rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

DEPTH_RANGE = (1e-4, 1e4)
Z_SATURATION = 1000.0
Z_SHARPNESS = 50.0
DEFAULT_CHUNK_FRAMES = 8
PER_FRAME_Z_FLOOR = 1e-6  # v1.5 divides by z.clamp_min(1e-6)


def log_depth_max(
    depths: torch.Tensor, K: torch.Tensor, source_c2w: torch.Tensor, target_c2w: torch.Tensor,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> torch.Tensor:
    """Lmax of the soft z-buffer over every frame and pixel: max log(1 + clamp(z_target, 0, 1000))."""
    best = None
    for span in _chunks(len(depths), chunk_frames):
        _, z = _project(depths[span], K, K, _w2c(source_c2w[span], depths), _w2c(target_c2w[span], depths))
        chunk_max = _log_depth(z).max()
        best = chunk_max if best is None else torch.maximum(best, chunk_max)
    return best


def iter_warp_render(
    frames: torch.Tensor, depths: torch.Tensor, K: torch.Tensor, source_c2w: torch.Tensor,
    target_c2w: torch.Tensor, depth_max: torch.Tensor | float | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Yield (frame slice, render, mask) chunk by chunk. `depth_max` is the video's `log_depth_max`;
    by default it is computed over the frames given, which is right only for a whole video."""
    if depth_max is None:
        depth_max = log_depth_max(depths, K, source_c2w, target_c2w, chunk_frames)
    depth_max = torch.as_tensor(depth_max, dtype=torch.float32, device=depths.device)
    for span in _chunks(len(frames), chunk_frames):
        colour = _unit_range(frames[span].to(depths.device))  # frames may stay on the host
        position, z = _project(depths[span], K, K, _w2c(source_c2w[span], depths), _w2c(target_c2w[span], depths))
        render, mask, _ = _splat(colour, position, z, depth_max)
        yield span, render, mask


@dataclass(frozen=True)
class PerFrameRender:
    render: torch.Tensor  # [N, 3, H, W] float32 in [-1, 1], holes -1
    mask: torch.Tensor  # [N, H, W] bool, True where something was splatted
    depth: torch.Tensor  # [N, H, W] float32 splatted target-camera z, 0 in holes


def iter_render_per_frame(
    frames: torch.Tensor, depths: torch.Tensor, source_K: torch.Tensor, source_w2c: torch.Tensor,
    target_w2c: torch.Tensor, target_K: torch.Tensor, chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> Iterator[tuple[slice, PerFrameRender]]:
    """v1.5's render (module docstring), chunk by chunk: source_K [N, 3, 3], source_w2c and target_w2c
    [N, 4, 4] world-to-camera, target_K [3, 3]."""
    for span in _chunks(len(frames), chunk_frames):
        depth = depths[span].to(torch.float32)
        colour = _unit_range(frames[span].to(depths.device))
        source = source_w2c[span].to(device=depths.device, dtype=torch.float32)
        target = target_w2c[span].to(device=depths.device, dtype=torch.float32)
        position, z = _project(depth, source_K[span], target_K, source, target, depth_range=None, z_floor=PER_FRAME_Z_FLOOR)
        valid = (depth > 0) & (z > 0)
        per_frame_max = _log_depth(z).amax(dim=(1, 2))  # each frame's own soft z-buffer scale
        render, mask, splatted = _splat(colour, position, z, per_frame_max, valid, with_depth=True)
        yield span, PerFrameRender(render, mask[:, 0] > 0, splatted)


def render_per_frame(
    frames: torch.Tensor, depths: torch.Tensor, source_K: torch.Tensor, source_w2c: torch.Tensor,
    target_w2c: torch.Tensor, target_K: torch.Tensor, chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> PerFrameRender:
    """The whole of `iter_render_per_frame` at once."""
    parts = [part for _, part in iter_render_per_frame(frames, depths, source_K, source_w2c, target_w2c, target_K, chunk_frames)]
    return PerFrameRender(*(torch.cat([getattr(p, name) for p in parts]) for name in ("render", "mask", "depth")))


def warp_render(
    frames: torch.Tensor, depths: torch.Tensor, K: torch.Tensor, source_c2w: torch.Tensor,
    target_c2w: torch.Tensor, depth_max: torch.Tensor | float | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(render [N, 3, H, W], mask [N, 1, H, W]); see the module docstring."""
    parts = list(iter_warp_render(frames, depths, K, source_c2w, target_c2w, depth_max, chunk_frames))
    return torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


def render_to_uint8(render: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> [N, H, W, 3] uint8, truncating like upstream: holes become 0."""
    return ((render.permute(0, 2, 3, 1) + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)


def mask_to_uint8(mask: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] in {0, 1} -> [N, H, W, 1] uint8 in {0, 255}."""
    return (mask.permute(0, 2, 3, 1) * 255.0).clamp(0, 255).to(torch.uint8)


def _chunks(n: int, size: int) -> Sequence[slice]:
    if size < 1:
        raise ValueError(f"chunk_frames must be positive, got {size}")
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _unit_range(frames: torch.Tensor) -> torch.Tensor:
    if frames.dtype == torch.uint8:
        return frames.to(torch.float32) / 127.5 - 1.0
    return frames.to(torch.float32)


def _log_depth(z: torch.Tensor) -> torch.Tensor:
    return torch.log(1 + torch.clamp(z, min=0, max=Z_SATURATION))


def _w2c(c2w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.linalg.inv(c2w.to(device=like.device, dtype=torch.float32))


def _project(
    depths: torch.Tensor, source_K: torch.Tensor, target_K: torch.Tensor, source_w2c: torch.Tensor, target_w2c: torch.Tensor,
    depth_range: tuple[float, float] | None = DEPTH_RANGE, z_floor: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each source pixel lands: (canvas position [b, 2, h, w] as (x, y) + 1, target z [b, h, w]).

    `source_K` is [3, 3] (one for every frame) or [b, 3, 3] (each frame's own); `depth_range` clips
    the depth first (v1); `z_floor` bounds the divisor of the projection (v1.5)."""
    b, h, w = depths.shape
    device = depths.device
    depth = depths.to(torch.float32)
    if depth_range is not None:
        depth = depth.clamp(*depth_range)
    source_K = source_K.to(device=device, dtype=torch.float32)
    target_K = target_K.to(device=device, dtype=torch.float32)
    # WHY inv(source_w2c) and not source_c2w: upstream inverts the w2c back; inv(inv(C)) != C in the
    # last bit, and the same matmul shapes below keep the same CPU kernels -- all for bit parity.
    source_to_target = torch.bmm(target_w2c, torch.linalg.inv(source_w2c))

    xs = torch.arange(w, device=device, dtype=torch.float32).expand(h, w)
    ys = torch.arange(h, device=device, dtype=torch.float32)[:, None].expand(h, w)
    pixels = torch.stack([xs, ys, torch.ones(h, w, device=device)], dim=2)[None, :, :, :, None]
    inverse_K = torch.linalg.inv(source_K)
    inverse_K = inverse_K[:, None, None] if inverse_K.dim() == 3 else inverse_K[None, None, None]
    rays = torch.matmul(inverse_K, pixels)  # [1 or b, h, w, 3, 1]
    points = depth[:, :, :, None, None] * rays
    points = torch.cat([points, torch.ones(b, h, w, 1, 1, device=device)], dim=3)
    points = torch.matmul(source_to_target[:, None, None], points)[:, :, :, :3]
    projected = torch.matmul(target_K[None, None, None], points)[..., 0]  # [b, h, w, 3]
    divisor = projected[..., 2:3] if z_floor is None else projected[..., 2:3].clamp_min(z_floor)
    uv = projected[..., :2] / divisor

    # WHY subtract then add the pixel grid: upstream goes through a flow field, (u - x) + x, which
    # is not u in float32; the + 1 moves into the padded canvas.
    grid = torch.stack([xs, ys])[None]
    flow = uv.permute(0, 3, 1, 2) - grid
    return (flow + grid) + 1, projected[..., 2]


def _clamp_to_canvas(xy: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """Clamp [b, 2, h, w] (x, y) positions into the padded canvas [0, w + 1] x [0, h + 1]."""
    return torch.stack([xy[:, 0].clamp(0, w + 1), xy[:, 1].clamp(0, h + 1)], dim=1)


def _splat(
    colour: torch.Tensor, position: torch.Tensor, z: torch.Tensor, depth_max: torch.Tensor,
    source_valid: torch.Tensor | None = None, with_depth: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Bilinear forward splat into an (h+2) x (w+2) canvas, soft z-buffered, border cropped:
    (render, mask [b, 1, h, w], splatted z [b, h, w] or None).

    `depth_max`: the soft z-buffer's scale, one for all frames ([]) or one per frame ([b]);
    `source_valid` [b, h, w]: source pixels that may splat at all (v1.5); `with_depth`: also splat z
    (as one more channel, so the colour sums are untouched)."""
    if with_depth:
        colour = torch.cat([colour, z[:, None]], dim=1)
    b, c, h, w = colour.shape
    pos = _clamp_to_canvas(position, w, h)
    lo = _clamp_to_canvas(torch.floor(position).long(), w, h)
    hi = _clamp_to_canvas(torch.ceil(position).long(), w, h)
    # Proximity weights of the four neighbours. WHY not 1 - frac for the high side: on an integral
    # coordinate lo == hi and both sides get weight 1 (four times weight 1 on one pixel at an exactly
    # integral landing spot) -- upstream's quirk; clamped positions distort the weights the same way.
    near_lo = 1 - (pos - lo)  # [b, 2, h, w] for (x, y)
    near_hi = 1 - (hi - pos)
    (lo_x, lo_y), (hi_x, hi_y) = lo.unbind(1), hi.unbind(1)
    (wx_lo, wy_lo), (wx_hi, wy_hi) = near_lo[:, None].unbind(2), near_hi[:, None].unbind(2)

    valid = (z >= 0).to(torch.float32)[:, None]
    if source_valid is not None:
        valid = valid * source_valid.to(torch.float32)[:, None]  # both 0/1: the product is exact
    scale = depth_max.clamp_min(1e-6)
    scale = scale.reshape(-1, 1, 1, 1) if scale.dim() == 1 else scale
    z_weight = torch.exp(_log_depth(z)[:, None] / scale * Z_SHARPNESS)
    corners = (  # upstream's accumulation order: (lo y, lo x), (hi y, lo x), (lo y, hi x), (hi y, hi x)
        (lo_y, lo_x, wy_lo * wx_lo), (hi_y, lo_x, wy_hi * wx_lo),
        (lo_y, hi_x, wy_lo * wx_hi), (hi_y, hi_x, wy_hi * wx_hi),
    )
    colour_hwc = torch.moveaxis(colour, 1, 3)
    frame_index = torch.arange(b, device=colour.device)[:, None, None]
    # one canvas of colour sums and weight sums: [..., :c] colour, [..., c] weight
    sums = torch.zeros(b, h + 2, w + 2, c + 1, device=colour.device)
    for y, x, proximity in corners:
        weight = torch.moveaxis(proximity * valid / z_weight, 1, 3)  # [b, h, w, 1]
        _accumulate(sums, (frame_index, y, x), torch.cat([colour_hwc * weight, weight], dim=3))

    sums = torch.moveaxis(sums, 3, 1)[:, :, 1:-1, 1:-1]
    colours = c - 1 if with_depth else c
    canvas, weights = sums[:, :colours], sums[:, c:]
    known = weights > 0
    render = torch.where(known, canvas / weights, -1.0).clamp(-1, 1)
    depth = torch.where(known, sums[:, colours:c] / weights, 0.0)[:, 0] if with_depth else None
    return render, known.to(torch.float32), depth


def _accumulate(sums: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor, torch.Tensor], values: torch.Tensor) -> None:
    """sums[frame, y, x] += values, repeated positions summed.

    On CPU, index_put_ adds in order: upstream's sums bit for bit. On CUDA, index_put_ with accumulate
    sorts every index first (3.8 s for 81 frames at 480x832 on an H200); index_add_ over flat positions
    adds with atomics instead, in an order that varies between runs, as any CUDA scatter-add does.
    """
    if sums.device.type != "cuda":
        sums.index_put_(index, values, accumulate=True)
        return
    frames, rows, cols, channels = sums.shape
    frame, y, x = index
    flat = ((frame * rows + y) * cols + x).reshape(-1)
    sums.view(-1, channels).index_add_(0, flat, values.reshape(-1, channels))
