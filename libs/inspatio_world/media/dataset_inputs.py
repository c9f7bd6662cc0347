"""The three videos the generator is conditioned on, read the way upstream's TestDataset does.

All results are float32 [T, 3, H, W] (spec conditioning.md §5.2-5.3):
- source: the first `max_frames` (1000) decoded RGB frames, /255, stretched (no crop) to 480x832
  with torchvision's tensor Resize (bilinear, antialias=True, align_corners=False), then
  Normalize(0.5, 0.5) -> [-1, 1]; v1.5 (`crop=True`) scales to cover and crops the centre instead
  (media/centre_crop.py), then /255 * 2 - 1;
- render: /255 * 2 - 1 -> [-1, 1], holes (black) at -1; no resize, the renderer wrote 480x832;
- mask: /255 > 0.5 -> {-1, +1}, +1 = valid (rendered), -1 = hole; all three channels kept.

Decoding runs in chunks and each chunk is converted (and resized) before the next is decoded, so
only the converted result is held, never a whole video at its original resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .centre_crop import centre_crop
from .decode import DEFAULT_LIMITS, DecodeLimits, images_to_frames, iter_frames, probe_video

SOURCE_SIZE = (480, 832)  # (H, W), the config's video_size
SOURCE_MAX_FRAMES = 1000  # upstream keeps only the first 1000 decoded frames


def resize_and_normalize(frames: torch.Tensor, size: tuple[int, int] = SOURCE_SIZE) -> torch.Tensor:
    """[T, 3, h, w] in [0, 1] -> [T, 3, *size] in [-1, 1], as Resize(size) + Normalize(0.5, 0.5)."""
    if tuple(frames.shape[-2:]) != tuple(size):  # torchvision returns the input untouched at the target size
        frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (frames - 0.5) / 0.5


def to_render_values(frames: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return frames * 2.0 - 1.0


def to_mask_values(frames: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> {-1, +1}: the lossy-coded 0/255 mask is re-binarised at 0.5."""
    return (frames > 0.5).float() * 2.0 - 1.0


def load_source_video(
    path: str | Path,
    max_frames: int = SOURCE_MAX_FRAMES,
    size: tuple[int, int] = SOURCE_SIZE,
    *,
    crop: bool = False,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> torch.Tensor:
    """The source video as float32 [T, 3, *size] in [-1, 1], T = min(decoded frames, max_frames);
    `crop`: v1.5's centre crop instead of v1's stretch."""
    if crop:
        cropped = lambda images: to_render_values(images_to_frames(centre_crop(images, (size[1], size[0]))))  # noqa: E731
        return _decode_converted(path, max_frames, cropped, limits, images=True)
    return _decode_converted(path, max_frames, lambda frames: resize_and_normalize(frames, size), limits)


def load_render_and_mask(
    render_path: str | Path,
    mask_path: str | Path,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(render in [-1, 1], mask in {-1, +1}), each float32 [T, 3, H, W] with its own frame count."""
    render = _decode_converted(render_path, None, to_render_values, limits)
    mask = _decode_converted(mask_path, None, to_mask_values, limits)
    return render, mask


def _decode_converted(
    path: str | Path,
    max_frames: int | None,
    convert: Callable[[torch.Tensor], torch.Tensor],
    limits: DecodeLimits,
    chunk_frames: int = 16,
    images: bool = False,
) -> torch.Tensor:
    """Decode up to `max_frames` frames chunk by chunk, convert each chunk from [0, 1] (`images`: from
    the uint8 images [t, H, W, 3]) and stack the results."""
    expected = probe_video(path).frames
    out: torch.Tensor | None = None
    filled = 0
    for chunk in iter_frames(path, 0, max_frames, chunk_frames=chunk_frames, limits=limits):
        converted = convert(chunk if images else images_to_frames(chunk))
        if out is None:  # allocated once the converted frame size is known
            capacity = expected if max_frames is None else min(expected, max_frames)
            out = converted.new_empty((max(capacity, len(converted)), *converted.shape[1:]))
        elif filled + len(converted) > len(out):  # the container under-reported its frame count
            out = torch.cat([out[:filled], converted.new_empty(converted.shape)])
        out[filled : filled + len(converted)] = converted
        filled += len(converted)
    assert out is not None  # iter_frames raises when there is no decodable frame
    return out[:filled]
