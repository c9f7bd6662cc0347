"""Step 2a as a stage: DA3 depth, intrinsics and poses of a video, cached per video and weights.

The bundle (safetensors) holds what the renderer reads, as upstream's DA3 folder does:
`frames` [N, 480, 832, 3] uint8 (each frame resized with Lanczos and passed through JPEG quality
95, like upstream's frames/*.jpg), `depth` [N, 480, 832] float32, `intrinsics` [N, 3, 3] float32
at 832x480, and `extrinsic_w2c` [N, 3, 4] float64 (smoothed, what upstream writes to extrinsic.txt).

v1.5 (`model_version` "v1_5") first centre-crops the video to the output size (media/centre_crop.py, as
upstream v1.5 prepares its input video) and runs DA3 on the cropped frames; `frames` are those frames
as they are (upstream v1.5 renders from its prepared video, not from JPEGs).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..media.centre_crop import centre_crop
from ..media.decode import VideoInfo, probe_video, read_images
from ..media.dataset_inputs import SOURCE_MAX_FRAMES
from ..models.depth import OUTPUT_SIZE, DepthEstimator
from ..stopping import StopCheck, go_on
from ..store.base import ObjectStore
from ..store.keys import content_key
from .artifacts import SAFETENSORS, Stopwatch, Timing, fetch, scratch
from .identity import ModelIdentity

JPEG_QUALITY = 95


@dataclass(frozen=True)
class DepthOutput:
    key: str
    video: VideoInfo
    timing: Timing
    model: str  # digest of the weights that made it (stages/identity.py)


@dataclass(frozen=True)
class DepthBundle:
    frames: torch.Tensor  # [N, H, W, 3] uint8
    depth: torch.Tensor  # [N, H, W] float32
    intrinsics: torch.Tensor  # [N, 3, 3] float32
    extrinsic_w2c: torch.Tensor  # [N, 3, 4] float64
    video: VideoInfo


def renderer_frames(images: np.ndarray, size: tuple[int, int] = OUTPUT_SIZE) -> np.ndarray:
    """Upstream's frames/*.jpg: Lanczos resize to (W, H), then JPEG quality 95 (OpenCV, BGR order)."""
    out = np.empty((len(images), size[1], size[0], 3), dtype=np.uint8)
    for i, image in enumerate(images):
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if bgr.shape[1::-1] != size:  # upstream resizes only frames of another size
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LANCZOS4)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out[i] = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


def _video_meta(info: VideoInfo) -> str:
    return json.dumps(asdict(info))


def load_depth_bundle(path: Path) -> DepthBundle:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = json.loads(handle.metadata()["video"])
    tensors = load_file(str(path))
    return DepthBundle(tensors["frames"], tensors["depth"], tensors["intrinsics"], tensors["extrinsic_w2c"], VideoInfo(**meta))


def run_depth(store: ObjectStore, video_key: str, video_sha256: str, estimator: DepthEstimator,
              identity: ModelIdentity, force: bool = False, should_stop: StopCheck = go_on,
              model_version: str = "v1") -> DepthOutput:  # fmt: skip
    watch = Stopwatch()
    settings = estimator.settings
    crop = model_version == "v1_5"
    options = {"process_res": settings.process_res, "seed": settings.seed, "max_frames": SOURCE_MAX_FRAMES,
               "max_views_per_pass": settings.max_views_per_pass}  # fmt: skip
    if crop:  # v1's keys stay as they were
        options["centre_crop"] = list(settings.output_size)
    key = content_key("depth", {"video": video_sha256}, options, identity.digest, "depth.safetensors")
    with scratch() as folder:
        if not force and store.exists(key):
            bundle = load_depth_bundle(fetch(store, key, folder))
            return DepthOutput(key, bundle.video, watch.timing("depth", True), identity.digest)
        should_stop()
        path = fetch(store, video_key, folder, "video")
        info = probe_video(path)
        images = read_images(path, stop=SOURCE_MAX_FRAMES)
        images = (centre_crop(images, tuple(settings.output_size)) if crop else images).numpy()
        result = estimator.estimate(images, should_stop)
        should_stop()
        frames = images if crop else renderer_frames(images, tuple(settings.output_size))
        tensors = {
            "frames": torch.from_numpy(np.ascontiguousarray(frames)),
            "depth": torch.tensor(result.depth),  # copies: the result's arrays are read-only
            "intrinsics": torch.tensor(result.intrinsics),
            "extrinsic_w2c": torch.tensor(result.extrinsic_w2c),
        }
        bundle_path = folder / "depth.safetensors"
        save_file(tensors, str(bundle_path), metadata={"video": _video_meta(info), "model": identity.digest})
        store.put_file(key, bundle_path, content_type=SAFETENSORS)
    return DepthOutput(key, info, watch.timing("depth", False), identity.digest)
