"""Step 2b as a stage: warp the video into the trajectory's cameras, and plan the generator's frames.

Outputs (content-addressed by video, depth bundle, trajectory and options):
* `render.mkv`, `mask.mkv`: the N rendered frames at 480x832, 8-bit as upstream hands them to its
  encoder (render ((x+1)*127.5) truncated, holes 0; mask 255 = rendered), stored losslessly where
  upstream re-encodes them with lossy H.264 (crf 18);
* `schedule.json`: for each generator input frame, the source frame and the render frame it
  uses (time-freeze on the source, common length, adaptive bounce/subsample; spec §5.4-5.6), the
  source's fps, and (v1.5) the real frame count the generated video is cut back to (`aligned_frames`).

v1.5 (`model_version` "v1_5", upstream v1.5 pipeline/render_scene.py): the depth bundle holds the
centre-cropped video; each frame is rendered with its own intrinsics and pose into its target camera
(`warp_render.render_per_frame`, target K = frame 0's), from the depth as upstream stores it (linear
uint16, media/depth_uint16.py); per-frame trajectories give the target w2c as they are, keyframe ones
the same cameras as v1. The schedule plays every frame once, padded to whole blocks by repeating the
last (`plan_padded`); the output is cut back to the real frames and written at the source's fps.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..geometry.frame_schedule import FramePlan, freeze_indices, plan_frames, plan_padded
from ..geometry.poses import scale_intrinsic, source_c2w_from_w2c
from ..geometry.trajectory import KeyframeTrajectory, Trajectory, target_c2ws, target_w2cs, total_angle
from ..geometry.warp_render import iter_render_per_frame, iter_warp_render, log_depth_max, mask_to_uint8, render_to_uint8
from ..media.depth_uint16 import uint16_round_trip
from ..media.dataset_inputs import SOURCE_MAX_FRAMES
from ..media.background_writer import BackgroundWriter
from ..media.lossless import LosslessWriter
from ..stopping import StopCheck, go_on
from ..store.base import ObjectStore
from ..store.keys import content_key
from .artifacts import MKV, Stopwatch, Timing, all_exist, fetch, get_json, put_json, scratch
from .depth import load_depth_bundle

RENDERER_VERSION = "warper-1"  # part of the cache key: bump when the renderer's output changes
PER_FRAME_RENDERER_VERSION = "per-frame-1"  # v1.5's renderer, likewise


@dataclass(frozen=True)
class RenderOptions:
    trajectory: Trajectory
    trajectory_text: str  # the file's text, hashed into the cache key
    relative_to_source: bool = False
    rotation_only: bool = False
    adaptive_frames: bool = True
    freeze_repeat: int = 0
    freeze_frame: int | None = None
    model_version: str = "v1"

    @property
    def per_frame(self) -> bool:
        """v1.5's conditioning: per-frame intrinsics, padded frames, source fps."""
        return self.model_version == "v1_5"

    @property
    def renderer_version(self) -> str:
        return PER_FRAME_RENDERER_VERSION if self.per_frame else RENDERER_VERSION

    def cache_options(self) -> dict:
        options = {
            "trajectory_sha256": hashlib.sha256(self.trajectory_text.encode()).hexdigest(),
            "relative_to_source": self.relative_to_source, "rotation_only": self.rotation_only,
            "adaptive_frames": self.adaptive_frames, "freeze_repeat": self.freeze_repeat, "freeze_frame": self.freeze_frame,
        }  # fmt: skip
        if self.per_frame:  # v1's keys stay as they were
            options["model_version"] = self.model_version
        return options

    def frame_plan(self, video_frames: int, depth_frames: int) -> FramePlan:
        """The generator's input frames for a video of `video_frames` whose depth bundle has `depth_frames`."""
        if self.per_frame:
            return plan_padded(min(video_frames, SOURCE_MAX_FRAMES), depth_frames)
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


def render_keys(video_sha256: str, depth_key: str, options: RenderOptions) -> dict[str, str]:
    """The render's content keys: schedule.json, render.mkv, mask.mkv."""
    return {name: content_key("render", {"video": video_sha256, "depth": depth_key}, options.cache_options(),
                              options.renderer_version, name)
            for name in ("schedule.json", "render.mkv", "mask.mkv")}  # fmt: skip


def cached_render(store: ObjectStore, keys: dict[str, str], watch: Stopwatch) -> RenderOutput | None:
    """The complete render under `keys`, if all three objects exist (schedule.json is written last)."""
    if not all_exist(store, list(keys.values())):
        return None
    frames = len(get_json(store, keys["schedule.json"])["source_index"])
    return RenderOutput(keys["schedule.json"], keys["render.mkv"], keys["mask.mkv"], frames, watch.timing("render", True))


class RenderWork:
    """One render, produced chunk by chunk into lossless files in `folder`, published at the end.

    The frame plan is known before any frame is rendered (it needs only the bundle's frame counts), so
    a consumer can render just the frames it needs next (stages/render_feed.py). Use as a context
    manager: leaving it closes the files; `publish` uploads a complete render only.
    """

    def __init__(self, store: ObjectStore, keys: dict[str, str], depth_key: str, options: RenderOptions, folder: Path,
                 device: torch.device | None = None) -> None:  # fmt: skip
        device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.store, self.keys, self.folder = store, keys, folder
        bundle = load_depth_bundle(fetch(store, depth_key, folder))
        order = torch.tensor(freeze_indices(len(bundle.depth), options.freeze_repeat, options.freeze_frame))
        self.height, self.width = bundle.depth.shape[1:]
        self.frames = len(order)  # render (= mask) frames
        self.plan = options.frame_plan(bundle.video.frames, len(bundle.depth))
        self.fps = bundle.video.fps
        self.rendered = 0  # frames written so far
        chunks = _per_frame_chunks if options.per_frame else _warper_chunks
        self._chunks = chunks(bundle, order, options, device)
        # encoded in threads of their own while the next chunk renders
        self._renders = BackgroundWriter(LosslessWriter(folder / "render.mkv", self.width, self.height, "rgb"))
        self._masks = BackgroundWriter(LosslessWriter(folder / "mask.mkv", self.width, self.height, "mask"))
        self._open = True

    def __enter__(self) -> "RenderWork":
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        if self._open:  # the writers flush on close, which may happen only once
            self._open = False
            try:
                self._renders.close()
            finally:
                self._masks.close()

    def next_chunk(self) -> tuple[slice, torch.Tensor, torch.Tensor]:
        """Render and write the next chunk: (frames, render uint8 [n, H, W, 3], mask bool [n, H, W]), on the CPU."""
        span, render, mask = next(self._chunks)
        render, mask = render_to_uint8(render).cpu(), mask_to_uint8(mask)[..., 0].cpu() > 0
        self._renders.write(render)
        self._masks.write(mask)
        self.rendered = span.stop
        return span, render, mask

    def schedule(self) -> dict:
        """schedule.json: the frame plan, the source's fps and (v1.5, adjustment "padded") the real frames."""
        schedule = {
            "source_index": list(self.plan.source_index), "render_index": list(self.plan.render_index),
            "adjustment": str(self.plan.adjustment), "fps": self.fps,
        }  # fmt: skip
        if self.plan.adjustment == "padded":  # v1.5: the generated video is cut back to these, at `fps` (the source's)
            schedule["aligned_frames"] = self.plan.aligned_frames
        return schedule

    def publish(self, timing: Timing) -> RenderOutput:
        """Upload the finished render; the schedule goes last: its presence marks a complete render."""
        if self.rendered < self.frames:
            raise RuntimeError(f"render published after {self.rendered} of {self.frames} frames")
        self._close()
        self.store.put_file(self.keys["render.mkv"], self.folder / "render.mkv", content_type=MKV)
        self.store.put_file(self.keys["mask.mkv"], self.folder / "mask.mkv", content_type=MKV)
        put_json(self.store, self.keys["schedule.json"], self.schedule())
        return RenderOutput(self.keys["schedule.json"], self.keys["render.mkv"], self.keys["mask.mkv"], len(self.plan), timing)


def _warper_chunks(bundle, order: torch.Tensor, options: RenderOptions, device: torch.device):
    """v1: frame 0's K for every frame, one soft z-buffer scale over the whole video."""
    frames = bundle.frames[order].permute(0, 3, 1, 2)  # uint8 [N, 3, H, W], converted per chunk
    depths = bundle.depth[order].to(device)
    source_c2w = source_c2w_from_w2c(bundle.extrinsic_w2c[order].numpy(), device=device)
    targets = target_c2ws(options.trajectory, source_c2w, options.rotation_only, options.relative_to_source)
    height, width = depths.shape[1:]
    K = scale_intrinsic(bundle.intrinsics[0].to(device), width, height)  # upstream uses frame 0's K throughout
    depth_max = log_depth_max(depths, K, source_c2w, targets)  # the soft z-buffer's scale spans all frames
    return iter_warp_render(frames, depths, K, source_c2w, targets, depth_max)


def _per_frame_chunks(bundle, order: torch.Tensor, options: RenderOptions, device: torch.device):
    """v1.5: each frame's own K and pose, target K = frame 0's; (span, render, mask [n, 1, H, W]) like the warper."""
    frames = bundle.frames[order].permute(0, 3, 1, 2)
    depths = uint16_round_trip(bundle.depth[order]).to(device)
    source_K = bundle.intrinsics[order].to(device=device, dtype=torch.float32)
    w2c = bundle.extrinsic_w2c[order].to(torch.float32)
    source_w2c = torch.cat([w2c, torch.tensor([[[0.0, 0.0, 0.0, 1.0]]]).expand(len(w2c), 1, 4)], dim=1).to(device)
    source_c2w = source_c2w_from_w2c(bundle.extrinsic_w2c[order].numpy(), device=device)
    targets = target_w2cs(options.trajectory, source_c2w, options.rotation_only, options.relative_to_source)
    chunks = iter_render_per_frame(frames, depths, source_K, source_w2c, targets, source_K[0])
    return ((span, part.render, part.mask[:, None].to(torch.float32)) for span, part in chunks)


def run_render(store: ObjectStore, video_sha256: str, depth_key: str, options: RenderOptions,
               device: torch.device | None = None, force: bool = False, should_stop: StopCheck = go_on) -> RenderOutput:  # fmt: skip
    watch = Stopwatch()
    keys = render_keys(video_sha256, depth_key, options)
    cached = None if force else cached_render(store, keys, watch)
    if cached is not None:
        return cached
    with scratch() as folder:
        should_stop()
        with RenderWork(store, keys, depth_key, options, folder, device) as work:
            while work.rendered < work.frames:
                work.next_chunk()
                should_stop()  # between chunks
            return work.publish(watch.timing("render", False))
