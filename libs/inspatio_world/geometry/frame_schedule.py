"""Which source and render frame lands at each output position (spec conditioning.md §5.4-5.6).

Upstream's dataset builds the conditioning clip in three steps, all of which only pick frames:

1. time-freeze on the source: frame f (default n // 2, clamped) is repeated R extra times right
   after itself, as the renderer already did for the render/mask videos;
2. alignment: source, render and mask are cut to their common length n;
3. adaptive frame count from the trajectory's total keyframe angle (degrees): at least
   max(ceil(total / 0.8) + 1, 121) frames, so the camera turns at most 0.8 deg per frame (short
   clips are "bounced" 0..n-1, n-2..0, 1..), and at most floor(total / 0.3) + 1 frames, so it turns
   at least 0.3 deg per frame (long clips are subsampled). A pure zoom (total <= 1e-3) only has the
   121-frame minimum. The same positions index source, render and mask.

v1.5 (upstream v1.5 pipeline/scene_schema.padded_frame_count, datasets/utils.iter_video_chunks) has
none of these: `plan_padded` keeps every frame once and pads the clip to whole 3-latent blocks by
repeating its last frame; the output is then cut back to the real frame count (`aligned_frames`).

`plan_frames` returns the result as index lists so a caller decodes, stores or reorders only what it
needs; indices are into the ORIGINAL source video and into the render (= mask) video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

MAX_ANGLE_PER_FRAME = 0.8  # degrees; faster trajectories get more frames (bounce)
MIN_ANGLE_PER_FRAME = 0.3  # degrees; slower trajectories get fewer frames (subsample)
MIN_OUTPUT_FRAMES = 121
ZOOM_ANGLE_EPS = 1e-3  # a total angle at or below this is a pure zoom: no angle-based bounds
FRAMES_PER_LATENT = 4  # the Wan VAE encodes frame 0 alone, then groups of four
LATENTS_PER_BLOCK = 3

Adjustment = Literal["bounce", "subsample", "unchanged", "disabled", "padded"]


@dataclass(frozen=True)
class FramePlan:
    """Per output position t: source_index[t] (original source frame) and render_index[t] (render/mask frame)."""

    source_index: tuple[int, ...]
    render_index: tuple[int, ...]
    aligned_frames: int  # n after freeze and truncation, before the adaptive step (padded: the real frames)
    adjustment: Adjustment

    def __len__(self) -> int:
        return len(self.source_index)


def freeze_indices(n: int, repeat: int, frame: int | None = None) -> list[int]:
    """Source frame order after a time-freeze: [0..f] + [f] * repeat + [f+1..n-1], f = frame or n // 2, clamped."""
    if n < 1:
        raise ValueError(f"need at least one frame to freeze, got {n}")
    if repeat <= 0:
        return list(range(n))
    f = min(max(n // 2 if frame is None else frame, 0), n - 1)
    return list(range(f + 1)) + [f] * repeat + list(range(f + 1, n))


def bounce_indices(n_source: int, n_target: int) -> list[int]:
    """n_target indices running forward and backward over n_source frames: 0..n-1, n-2..0, 1.. .

    With n_target <= n_source this is an even subsample instead: floor(linspace(0, n_source - 1, n_target)).
    """
    if n_target <= n_source:
        return subsample_indices(n_source, n_target)
    if n_source == 1:  # upstream divides by a zero cycle length here; a single frame can only repeat
        return [0] * n_target
    cycle = 2 * (n_source - 1)
    return [p if p < n_source else cycle - p for p in (i % cycle for i in range(n_target))]


def subsample_indices(n_source: int, n_target: int) -> list[int]:
    """floor(linspace(0, n_source - 1, n_target)), exactly as numpy rounds it."""
    return np.linspace(0, n_source - 1, n_target).astype(int).tolist()


def needed_frame_range(total_angle: float, n: int) -> tuple[int, int]:
    """(min_needed, max_needed) frames for a trajectory turning `total_angle` degrees; (n, n) for a pure zoom."""
    if total_angle <= ZOOM_ANGLE_EPS:
        return n, n
    min_needed = max(2, math.ceil(total_angle / MAX_ANGLE_PER_FRAME) + 1)
    max_needed = max(2, math.floor(total_angle / MIN_ANGLE_PER_FRAME) + 1)
    return min_needed, max_needed


def adaptive_positions(n: int, total_angle: float) -> tuple[list[int], Adjustment]:
    """Positions into the aligned n-frame clip, and which rule picked them."""
    min_needed, max_needed = needed_frame_range(total_angle, n)
    target = max(min_needed, MIN_OUTPUT_FRAMES)
    if n < target:
        return bounce_indices(n, target), "bounce"
    if n > max_needed:
        return subsample_indices(n, max_needed), "subsample"
    return list(range(n)), "unchanged"


def plan_frames(
    n_source: int,
    n_render: int,
    traj_total_angle: float,
    adaptive: bool = True,
    freeze_repeat: int = 0,
    freeze_frame: int | None = None,
) -> FramePlan:
    """The output clip's frames. `n_render` is the shorter of the render and mask videos' frame counts.

    `traj_total_angle` is `trajectory.total_angle` of the RAW keyframes (not the resampled curve).
    """
    if n_render < 1:
        raise ValueError(f"need at least one render frame, got {n_render}")
    source_order = freeze_indices(n_source, freeze_repeat, freeze_frame)
    n = min(len(source_order), n_render)
    if adaptive:
        positions, adjustment = adaptive_positions(n, traj_total_angle)
    else:
        positions, adjustment = list(range(n)), "disabled"
    return FramePlan(
        source_index=tuple(source_order[p] for p in positions),
        render_index=tuple(positions),
        aligned_frames=n,
        adjustment=adjustment,
    )


def padded_frame_count(frames: int, latents_per_block: int = LATENTS_PER_BLOCK) -> int:
    """The fewest frames >= `frames` that encode to whole blocks of `latents_per_block` latents: 1 + 4(L - 1)
    with L = 1 + ceil((frames - 1) / 4) rounded up to a multiple of the block (upstream v1.5's rule)."""
    if frames < 1:
        raise ValueError(f"need at least one frame, got {frames}")
    latents = (frames - 1 + FRAMES_PER_LATENT - 1) // FRAMES_PER_LATENT + 1
    latents = -(-latents // latents_per_block) * latents_per_block
    return (latents - 1) * FRAMES_PER_LATENT + 1


def pad_indices(frames: int, latents_per_block: int = LATENTS_PER_BLOCK) -> list[int]:
    """0..frames-1, then the last frame repeated up to `padded_frame_count(frames)`."""
    return list(range(frames)) + [frames - 1] * (padded_frame_count(frames, latents_per_block) - frames)


def plan_padded(n_source: int, n_render: int, latents_per_block: int = LATENTS_PER_BLOCK) -> FramePlan:
    """v1.5's clip: the common length n of source and render, each frame once, padded by repeating the
    last (`aligned_frames` = n, the frames the output is cut back to)."""
    n = min(n_source, n_render)
    order = tuple(pad_indices(n, latents_per_block))
    return FramePlan(source_index=order, render_index=order, aligned_frames=n, adjustment="padded")
