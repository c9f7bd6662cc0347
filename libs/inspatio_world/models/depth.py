"""Step 2a: per-frame depth, intrinsics and camera poses from Depth-Anything-3 (DA3 0.1.1).

Reproduces upstream's `model.inference(frames, use_ray_pose=False)` with its defaults
(process_res 504, upper_bound_resize, saddle_balanced reference view, no camera inputs, no
Gaussian splats) and what InSpatio does with the result:

    frames uint8 RGB [N, H, W, 3] (original resolution)
      -> network input [N, 3, h, w] (depth_preprocess: long side 504, sides multiples of 14)
      -> DA3, all N views in ONE forward pass (views attend to each other)
      -> depth [N, h, w], w2c [N, 3, 4], K [N, 3, 3] at (w, h)
      -> DepthResult: depth resized NEAREST to 832x480, K rows scaled by 832/w and 480/h,
         poses normalised to frame 0 and smoothed (geometry.poses.postprocess_da3_poses).

Units: the nested (metric) model returns depth in approximately metres (> 0; sky set to at most
200) and translations in the same unit. Cameras use OpenCV axes (x right, y down, z forward).

Repeatability: the nested model's metric alignment subsamples pixels with torch.randperm /
torch.randint (the global RNG) when a clip has more than 100k non-sky pixels, so upstream's scale
and sky depth vary slightly between runs. Here the RNG is forked and seeded around each call
(`DepthSettings.seed`), so a clip always gives the same result and the caller's RNG is untouched.

Precision: on CUDA the backbone runs under bf16 autocast (fp16 without bf16 support) and the heads
in fp32, as the package does; on CPU everything runs in fp32 (upstream never runs on CPU).

Memory: `max_views_per_pass` splits long clips into passes of at most that many views. This CHANGES
results: views only attend within their pass, each pass picks its own reference view and its own
metric scale. Consecutive passes share one frame; each later pass is rescaled (median depth ratio
on the shared frame) and re-posed so that the shared frame's camera matches the earlier pass.

Stopping: `estimate(frames, should_stop)` calls `should_stop` between passes and before each layer
of the network's repeated blocks (the backbone's transformer blocks), so a cancelled call stops
within one block of one pass, not after the whole clip (stopping.py).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..geometry.poses import postprocess_da3_poses, scale_intrinsics_to
from ..stopping import StopCheck, go_on
from .depth_checkpoint import load_network
from .depth_preprocess import DEFAULT_PROCESS_RES, preprocess_frames, resize_depth_nearest

OUTPUT_SIZE = (832, 480)  # (width, height) of upstream's saved depth maps and intrinsics (fix_resize)
REF_VIEW_STRATEGY = "saddle_balanced"


@dataclass(frozen=True)
class DepthSettings:
    """How DA3 is run. The defaults reproduce upstream; `seed=None` leaves the global RNG as is."""

    process_res: int = DEFAULT_PROCESS_RES
    output_size: tuple[int, int] = OUTPUT_SIZE
    seed: int | None = 0
    max_views_per_pass: int | None = None  # None: all frames in one pass, as upstream

    def __post_init__(self) -> None:
        if self.max_views_per_pass is not None and self.max_views_per_pass < 2:
            raise ValueError("max_views_per_pass must be at least 2 (passes share one frame)")


@dataclass(frozen=True)
class DepthResult:
    """DA3 output for N frames, as InSpatio uses it (arrays are read-only).

    depth               [N, out_h, out_w] float32, approx. metres, nearest-resized from the processing size
    intrinsics          [N, 3, 3] float32 pixel K at (out_w, out_h); cx = out_w / 2, cy = out_h / 2
    w2c                 [N, 3, 4] float32 world-to-camera as DA3 returns it
    normalized_c2w      [N, 4, 4] float32 camera-to-world relative to frame 0 (frame 0 = I)
    smoothed_c2w        [N, 4, 4] float64 normalized_c2w after Gaussian smoothing (sigma 2)
    extrinsic_w2c       [N, 3, 4] float64 inverse of smoothed_c2w: what upstream writes to extrinsic.txt
    process_size        (w, h) DA3 ran at
    process_intrinsics  [N, 3, 3] float32 K at the processing size (for unprojecting unresized depth)
    """

    depth: np.ndarray
    intrinsics: np.ndarray
    w2c: np.ndarray
    normalized_c2w: np.ndarray
    smoothed_c2w: np.ndarray
    extrinsic_w2c: np.ndarray
    process_size: tuple[int, int]
    process_intrinsics: np.ndarray

    def __post_init__(self) -> None:
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False


class DepthEstimator:
    """A DA3 network plus upstream's call and post-processing. Build it with `from_folder`."""

    def __init__(
        self, network: nn.Module, settings: DepthSettings = DepthSettings(), model_name: str = "custom"
    ) -> None:
        self.network = network.eval()
        self.settings = settings
        self.model_name = model_name
        self.device = next(network.parameters()).device
        # The hooks ask the calling thread's check: concurrent calls each stop on their own.
        self._stop = threading.local()
        for layers in network.modules():
            if isinstance(layers, nn.ModuleList):
                for layer in layers:
                    layer.register_forward_pre_hook(self._check_stop)

    def _check_stop(self, *_) -> None:
        getattr(self._stop, "check", go_on)()

    @classmethod
    def from_folder(
        cls,
        folder: str | Path,
        settings: DepthSettings = DepthSettings(),
        device: torch.device | str | None = None,
    ) -> DepthEstimator:
        """Load config.json + model.safetensors (see depth_checkpoint); CUDA when available."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model_name, network = load_network(folder, device)
        return cls(network, settings, model_name)

    def estimate(self, frames: np.ndarray, should_stop: StopCheck = go_on) -> DepthResult:
        """uint8 RGB frames [N, H, W, 3] at original resolution -> DepthResult; `should_stop` may end it early."""
        images = preprocess_frames(frames, self.settings.process_res)  # validates the frames first
        self._stop.check = should_stop
        try:
            with self._seeded_rng():
                depth, w2c, process_k = self._predict_in_passes(images, should_stop)
        finally:
            self._stop.check = go_on
        height, width = images.shape[-2:]
        out_w, out_h = self.settings.output_size
        normalized, smoothed, extrinsic = postprocess_da3_poses(w2c)
        return DepthResult(
            depth=resize_depth_nearest(depth, out_w, out_h),
            intrinsics=scale_intrinsics_to(process_k, (width, height), out_w, out_h),
            w2c=w2c,
            normalized_c2w=normalized,
            smoothed_c2w=smoothed,
            extrinsic_w2c=extrinsic,
            process_size=(width, height),
            process_intrinsics=process_k,
        )

    def _predict_in_passes(self, images: torch.Tensor, should_stop: StopCheck) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        views = self.settings.max_views_per_pass or len(images)
        depth, w2c, intrinsics = self._predict(images[:views])
        start = views - 1
        while start + 1 < len(images):  # each later pass re-runs the previous pass's last frame
            should_stop()
            next_depth, next_w2c, next_k = self._predict(images[start : start + views])
            next_depth, next_w2c = align_to_shared_frame(depth[-1], w2c[-1], next_depth, next_w2c)
            depth = np.concatenate([depth, next_depth[1:]])
            w2c = np.concatenate([w2c, next_w2c[1:]])
            intrinsics = np.concatenate([intrinsics, next_k[1:]])
            start += views - 1
        return depth, w2c, intrinsics

    def _predict(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One forward pass over all `images` [n, 3, h, w] -> depth [n, h, w], w2c [n, 3, 4], K [n, 3, 3]."""
        with torch.inference_mode(), self._autocast():
            output = self.network(
                images[None].to(self.device),
                None,
                None,
                export_feat_layers=[],
                infer_gs=False,
                use_ray_pose=False,
                ref_view_strategy=REF_VIEW_STRATEGY,
            )
        return (
            output["depth"][0].float().cpu().numpy(),
            output["extrinsics"][0].float().cpu().numpy(),
            output["intrinsics"][0].float().cpu().numpy(),
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    @contextlib.contextmanager
    def _seeded_rng(self):
        if self.settings.seed is None:
            yield
            return
        cuda_devices = list(range(torch.cuda.device_count())) if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(self.settings.seed)
            yield


def align_to_shared_frame(
    anchor_depth: np.ndarray, anchor_w2c: np.ndarray, depth: np.ndarray, w2c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a later pass (its frame 0 = the shared frame) into the earlier pass's world and scale.

    anchor_depth [h, w], anchor_w2c [3, 4]: the shared frame from the earlier pass.
    depth [n, h, w], w2c [n, 3, 4]: the later pass. Returns them rescaled and re-posed (float32).
    """
    both = (anchor_depth > 0) & (depth[0] > 0)
    scale = float(np.median(anchor_depth[both] / depth[0][both])) if both.any() else 1.0
    c2w = np.linalg.inv(homogeneous(w2c.astype(np.float64)))
    c2w[:, :3, 3] *= scale
    pass_to_anchor_world = np.linalg.inv(homogeneous(anchor_w2c.astype(np.float64))) @ np.linalg.inv(c2w[0])
    aligned_w2c = np.linalg.inv(pass_to_anchor_world @ c2w)[:, :3, :]
    return (depth * np.float32(scale)).astype(np.float32), aligned_w2c.astype(np.float32)


def homogeneous(matrices: np.ndarray) -> np.ndarray:
    """[..., 3, 4] -> [..., 4, 4] with a last row 0 0 0 1."""
    bottom = np.zeros(matrices.shape[:-2] + (1, 4), dtype=matrices.dtype)
    bottom[..., 0, 3] = 1
    return np.concatenate([matrices, bottom], axis=-2)
