"""Step 2b as a stage: warp the video into the trajectory's cameras, and plan the generator's frames.

Outputs (content-addressed by video, depth bundle, trajectory and options):
* `render.mkv`, `mask.mkv`: the N rendered frames at 480x832, 8-bit as upstream hands them to its
  encoder (render ((x+1)*127.5) truncated, holes 0; mask 255 = rendered), stored losslessly where
  upstream re-encodes them with lossy H.264 (crf 18);
* `schedule.json`: for each generator input frame, the source frame and the render frame it
  uses (time-freeze on the source, common length, adaptive bounce/subsample; spec §5.4-5.6).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ..geometry.frame_schedule import FramePlan, freeze_indices, plan_frames
from ..geometry.poses import scale_intrinsic, source_c2w_from_w2c
from ..geometry.trajectory import KeyframeTrajectory, Trajectory, target_c2ws, total_angle
from ..geometry.warp_render import iter_warp_render, log_depth_max, mask_to_uint8, render_to_uint8
from ..media.dataset_inputs import SOURCE_MAX_FRAMES
from ..media.lossless import LosslessWriter
from ..stopping import StopCheck, go_on
from ..store.base import ObjectStore
from ..store.keys import content_key
from .artifacts import MKV, Stopwatch, Timing, all_exist, fetch, get_json, put_json, scratch
from .depth import load_depth_bundle

RENDERER_VERSION = "warper-1"  # part of the cache key: bump when the renderer's output changes


@dataclass(frozen=True)
class RenderOptions:
    trajectory: Trajectory
    trajectory_text: str  # the file's text, hashed into the cache key
    relative_to_source: bool = False
    rotation_only: bool = False
    adaptive_frames: bool = True
    freeze_repeat: int = 0
    freeze_frame: int | None = None

    def cache_options(self) -> dict:
        return {
            "trajectory_sha256": hashlib.sha256(self.trajectory_text.encode()).hexdigest(),
            "relative_to_source": self.relative_to_source, "rotation_only": self.rotation_only,
            "adaptive_frames": self.adaptive_frames, "freeze_repeat": self.freeze_repeat, "freeze_frame": self.freeze_frame,
        }  # fmt: skip

    def frame_plan(self, video_frames: int, depth_frames: int) -> FramePlan:
        """The generator's input frames for a video of `video_frames` whose depth bundle has `depth_frames`."""
        keyframes = isinstance(self.trajectory, KeyframeTrajectory)
        return plan_frames(
            min(video_frames, SOURCE_MAX_FRAMES), len(freeze_indices(depth_frames, self.freeze_repeat, self.freeze_frame)),
            total_angle(self.trajectory) if keyframes else 0.0,
            adaptive=self.adaptive_frames and keyframes,  # per-frame paths are already timed
            freeze_repeat=self.freeze_repeat, freeze_frame=self.freeze_frame,
        )  # fmt: skip


@dataclass(frozen=True)
class RenderOutput:
    schedule_key: str
    render_key: str
    mask_key: str
    frames: int  # generator input frames
    timing: Timing


def run_render(store: ObjectStore, video_sha256: str, depth_key: str, options: RenderOptions,
               device: torch.device | None = None, force: bool = False, should_stop: StopCheck = go_on) -> RenderOutput:  # fmt: skip
    watch = Stopwatch()
    keys = {name: content_key("render", {"video": video_sha256, "depth": depth_key}, options.cache_options(), RENDERER_VERSION, name)
            for name in ("schedule.json", "render.mkv", "mask.mkv")}  # fmt: skip
    if not force and all_exist(store, list(keys.values())):
        frames = len(get_json(store, keys["schedule.json"])["source_index"])
        return RenderOutput(keys["schedule.json"], keys["render.mkv"], keys["mask.mkv"], frames, watch.timing("render", True))

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with scratch() as folder:
        should_stop()
        bundle = load_depth_bundle(fetch(store, depth_key, folder))
        order = torch.tensor(freeze_indices(len(bundle.depth), options.freeze_repeat, options.freeze_frame))
        frames = bundle.frames[order].permute(0, 3, 1, 2)  # uint8 [N, 3, H, W], converted per chunk
        depths = bundle.depth[order].to(device)
        source_c2w = source_c2w_from_w2c(bundle.extrinsic_w2c[order].numpy(), device=device)
        targets = target_c2ws(options.trajectory, source_c2w, options.rotation_only, options.relative_to_source)
        height, width = depths.shape[1:]
        K = scale_intrinsic(bundle.intrinsics[0].to(device), width, height)  # upstream uses frame 0's K throughout
        depth_max = log_depth_max(depths, K, source_c2w, targets)  # the soft z-buffer's scale spans all frames
        render_path, mask_path = folder / "render.mkv", folder / "mask.mkv"
        with LosslessWriter(render_path, width, height, "rgb") as renders, LosslessWriter(mask_path, width, height, "mask") as masks:
            for _, render, mask in iter_warp_render(frames, depths, K, source_c2w, targets, depth_max):
                renders.write(render_to_uint8(render).cpu())
                masks.write(mask_to_uint8(mask)[..., 0].cpu() > 0)
                should_stop()  # between chunks
        plan = options.frame_plan(bundle.video.frames, len(bundle.depth))
        store.put_file(keys["render.mkv"], render_path, content_type=MKV)
        store.put_file(keys["mask.mkv"], mask_path, content_type=MKV)
    put_json(store, keys["schedule.json"], {
        "source_index": list(plan.source_index), "render_index": list(plan.render_index),
        "adjustment": str(plan.adjustment), "fps": bundle.video.fps,
    })  # fmt: skip
    return RenderOutput(keys["schedule.json"], keys["render.mkv"], keys["mask.mkv"], len(plan.source_index), watch.timing("render", False))
