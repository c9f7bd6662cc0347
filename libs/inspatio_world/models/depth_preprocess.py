"""Depth-Anything-3 input preparation and output resizing, as DA3 0.1.1's `inference` does it.

Input frames: uint8 RGB [N, H, W, 3] at the video's original resolution.
Network input: float32 [N, 3, h, w], ImageNet-normalised ((x / 255 - mean) / std, roughly [-2.2, 2.7]),
where (w, h) is the processing size: the long side brought to `process_res` (504), then each side
snapped to the nearest multiple of the 14-pixel patch. Aspect ratio is kept only approximately
(1920x900 -> 504x238, 1352x760 -> 504x280, 832x480 -> 504x294).

Resizes use OpenCV exactly as the package does (INTER_AREA when shrinking, INTER_CUBIC when
growing), so the network sees the same pixels as upstream.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

PATCH_SIZE = 14
DEFAULT_PROCESS_RES = 504
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def long_side_size(width: int, height: int, process_res: int = DEFAULT_PROCESS_RES) -> tuple[int, int]:
    """(w, h) after scaling the long side to `process_res` (Python round, half to even)."""
    scale = process_res / float(max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def nearest_patch_multiple(x: int, patch: int = PATCH_SIZE) -> int:
    """The multiple of `patch` closest to x; a tie goes up (DA3's rule)."""
    down = (x // patch) * patch
    up = down + patch
    return max(1, up if abs(up - x) <= abs(x - down) else down)


def processing_size(width: int, height: int, process_res: int = DEFAULT_PROCESS_RES) -> tuple[int, int]:
    """(w, h) DA3 runs at for a (width, height) frame, e.g. (1920, 900) -> (504, 238)."""
    w, h = (width, height) if max(width, height) == process_res else long_side_size(width, height, process_res)
    return nearest_patch_multiple(w), nearest_patch_multiple(h)


def resize_frame(frame: np.ndarray, process_res: int = DEFAULT_PROCESS_RES) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> uint8 RGB at the processing size, in DA3's two resize steps."""
    height, width = frame.shape[:2]
    if max(width, height) != process_res:
        w, h = long_side_size(width, height, process_res)
        shrink = process_res < max(width, height)
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    height, width = frame.shape[:2]
    w, h = nearest_patch_multiple(width), nearest_patch_multiple(height)
    if (w, h) != (width, height):
        grows = w > width or h > height
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_CUBIC if grows else cv2.INTER_AREA)
    return frame


def normalize_frames(frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB [N, h, w, 3] -> float32 [N, 3, h, w] ImageNet-normalised.

    Same float32 operations as torchvision's ToTensor (divide by 255) then Normalize (subtract, divide).
    WHY contiguous: a channels-last tensor makes the patch-embedding convolution pick another
    kernel, which changes the network output in the last bits.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous().float().div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return x.sub(mean).div(std)


def preprocess_frames(frames: np.ndarray, process_res: int = DEFAULT_PROCESS_RES) -> torch.Tensor:
    """uint8 RGB [N, H, W, 3] -> the network input float32 [N, 3, h, w] (see the module docstring)."""
    validate_frames(frames)
    return normalize_frames(np.stack([resize_frame(frame, process_res) for frame in frames]))


def validate_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        got = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be uint8 RGB [N, H, W, 3], got {got}")
    if len(frames) == 0:
        raise ValueError("frames must hold at least one frame")


def resize_depth_nearest(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """float32 depth [N, h, w] -> [N, height, width] with OpenCV nearest-neighbour (no new values)."""
    return np.stack([cv2.resize(d, (width, height), interpolation=cv2.INTER_NEAREST) for d in depth])
