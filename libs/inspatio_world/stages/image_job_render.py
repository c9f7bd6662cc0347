"""The depth/render step of an image job as a stage: pictures in the store -> the conditioning the
generator reads, content-addressed like a video job's render.

Inputs: the uploaded pictures (1 or 4 objects), a per-frame camera path (one w2c per output frame,
in the world of the first view: DA3 normalises to it), and the geometry: DA3 jointly over the views
(an estimator) or the user's own (geometry/supplied_geometry.py: a safetensors object holding depth
[V, H, W], intrinsics and w2c; the pictures are fitted to the depth maps' size). Steps:

1. decode and fit the pictures (media/image_inputs.py), estimate or check the geometry
   (geometry/image_scene.py) -- every input error is an ImageInputError/ValueError before rendering;
2. pad the cameras to whole 3-latent blocks by repeating the last one (v1.5's frame rule,
   geometry/frame_schedule.pad_indices), render and fuse frame by frame straight into the files, then
   anchor the source stream on the coverage (stages/image_render.py);
3. publish `render.mkv`, `mask.mkv` (as the video render stage) and `source.mkv` (the source stream,
   lossless RGB) and, last, `schedule.json`: source_index / render_index 0..F-1 into those videos,
   adjustment "padded", `aligned_frames` the real frame count (trim the output to it), fps 15 (the
   upstream examples' rate for image scenes), and for four views the view per latent, the coverage
   and the views kept per block. source.mkv reads like a video source: the generator's resize to the
   render size is the identity on it.

Upstream v1.5 hands the generator render and source as H.264 (crf 18, yuv420p) and the mask as
crf 0; here all three are lossless, as the video render stage keeps its intermediates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch

from ..geometry.frame_schedule import pad_indices
from ..geometry.image_scene import estimate_image_scene, supplied_image_scene
from ..geometry.supplied_geometry import decode_geometry
from ..geometry.trajectory import PerFrameTrajectory, Trajectory
from ..media.image_inputs import ImageInputError, decode_image_inputs
from ..media.lossless import LosslessWriter
from ..models.depth import DepthEstimator
from ..stopping import StopCheck, go_on
from ..store.base import ObjectStore
from ..store.keys import content_key
from .artifacts import MKV, Stopwatch, Timing, all_exist, get_json, object_digest, put_json, scratch
from .identity import ModelIdentity
from .image_render import choose_sources, iter_render_and_mask

IMAGE_FPS = 15.0
RENDERER_VERSION = "image-render-1"  # part of the cache key: bump when the outputs change
NAMES = ("schedule.json", "render.mkv", "mask.mkv", "source.mkv")


@dataclass(frozen=True)
class ImageRenderOutput:
    keys: dict[str, str]  # schedule.json / render.mkv / mask.mkv / source.mkv -> key
    frames: int  # rendered (padded) frames
    real_frames: int  # the camera path's frames: the output is trimmed to these
    timing: Timing


def image_render_keys(store: ObjectStore, image_keys: Sequence[str], trajectory_text: str, geometry: str,
                      output_frames: int | None = None) -> dict[str, str]:  # fmt: skip
    """The stage's content keys; `geometry` names how depth and cameras are had (weights digest, or
    the supplied object's digest)."""
    inputs = {f"image{i}": object_digest(store, key) for i, key in enumerate(image_keys)}
    options = {"trajectory_sha256": hashlib.sha256(trajectory_text.encode()).hexdigest(), "fps": IMAGE_FPS,
               "output_frames": output_frames}  # fmt: skip
    return {name: content_key("image_render", inputs, options, f"{RENDERER_VERSION}:{geometry}", name) for name in NAMES}


def run_image_render(store: ObjectStore, image_keys: Sequence[str], trajectory: Trajectory, trajectory_text: str,
                     estimator: DepthEstimator | None = None, identity: ModelIdentity | None = None,
                     geometry_key: str | None = None, output_frames: int | None = None, device: torch.device | str = "cpu",
                     force: bool = False, should_stop: StopCheck = go_on) -> ImageRenderOutput:  # fmt: skip
    """See the module docstring. Give `estimator` and `identity` (DA3), or `geometry_key` (the user's).
    `output_frames`: the frames the output is trimmed to (default: one per camera; an upstream scene
    folder's cameras are already padded and carry their own `valid_frames`)."""
    watch = Stopwatch()
    if not isinstance(trajectory, PerFrameTrajectory):
        raise ImageInputError("image jobs take a per-frame camera path (one 4x4 w2c per line, e.g. traj/image_orbit.txt)", "trajectory")
    if (geometry_key is None) == (estimator is None or identity is None):
        raise ValueError("give either an estimator and its identity, or a geometry object (not both)")
    geometry = f"supplied:{object_digest(store, geometry_key)}" if geometry_key else f"da3:{identity.digest}:{estimator.settings}"
    keys = image_render_keys(store, image_keys, trajectory_text, geometry, output_frames)
    real_frames = len(trajectory.w2c) if output_frames is None else output_frames
    if not 1 <= real_frames <= len(trajectory.w2c):
        raise ImageInputError(f"output_frames must be 1..{len(trajectory.w2c)} (the cameras given), got {real_frames}", "output_frames")
    if not force and all_exist(store, list(keys.values())):
        frames = len(get_json(store, keys["schedule.json"])["source_index"])
        return ImageRenderOutput(keys, frames, real_frames, watch.timing("image_render", True))
    should_stop()
    blobs = [store.get_bytes(key) for key in image_keys]
    if geometry_key is None:
        scene = estimate_image_scene(decode_image_inputs(blobs, tuple(estimator.settings.output_size)), estimator)
    else:
        supplied = decode_geometry(store.get_bytes(geometry_key))
        size = (supplied["depth"].shape[-1], supplied["depth"].shape[-2])  # the pictures are fitted to the depth maps
        scene = supplied_image_scene(decode_image_inputs(blobs, size), supplied["depth"], supplied["intrinsics"], supplied["w2c"])
    should_stop()
    targets = torch.tensor(trajectory.w2c[pad_indices(len(trajectory.w2c))], dtype=torch.float32)
    width, height = scene.size
    coverage: list[list[int]] = []
    with scratch() as folder:
        # frame by frame into the files: a long path at 832x480 is never held whole
        with LosslessWriter(folder / "render.mkv", width, height, "rgb") as renders, \
                LosslessWriter(folder / "mask.mkv", width, height, "mask") as masks:  # fmt: skip
            for render, mask in iter_render_and_mask(scene, targets, coverage, device, should_stop):
                renders.write(render)
                masks.write(mask)
        choice = choose_sources(scene.views, coverage)
        with LosslessWriter(folder / "source.mkv", width, height, "rgb") as sources:
            for view in choice.frame_views:
                sources.write(torch.from_numpy(scene.images[view : view + 1]))
        for name in ("render.mkv", "mask.mkv", "source.mkv"):
            store.put_file(keys[name], folder / name, content_type=MKV)
    order = list(range(len(targets)))
    put_json(store, keys["schedule.json"], {
        "source_index": order, "render_index": order, "adjustment": "padded", "aligned_frames": real_frames,
        "fps": IMAGE_FPS, "views": scene.views, "source_views": choice.source_views,
        "overlap_pixels": choice.overlap_pixels, "chunk_views": choice.chunk_views,
    })  # fmt: skip
    return ImageRenderOutput(keys, len(targets), real_frames, watch.timing("image_render", False))
