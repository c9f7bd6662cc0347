"""An exact intermediate video format: FFV1 in Matroska (.mkv), for frames and for masks.

Unlike the H.264 mp4s upstream writes (lossy even for the 0/255 mask), a round trip here returns
the very same bytes. RGB images [T, H, W, 3] uint8 are stored as `bgr0` (FFV1 has no 8-bit planar
RGB); masks [T, H, W] bool are stored as `gray` 0/255. Both decode through `decode`, so the
dataset readers accept these files as well as mp4s (a gray mask decodes to 0/255 in all three
channels). Read RGB files back with `decode.read_images`, masks with `read_lossless_masks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import torch

from .decode import iter_frames
from .stream_writer import StreamWriter

Kind = Literal["rgb", "mask"]

_PIXEL_FORMAT = {"rgb": "bgr0", "mask": "gray"}  # stored pixel format per kind
_INPUT_FORMAT = {"rgb": "rgb24", "mask": "gray"}  # layout of the arrays handed to PyAV


class LosslessWriter(StreamWriter):
    """Appends chunks to an FFV1 .mkv: uint8 [t, H, W, 3] for kind "rgb", bool [t, H, W] for kind "mask"."""

    def __init__(self, path: str | Path, width: int, height: int, kind: Kind = "rgb", fps: int = 24) -> None:
        if kind not in _PIXEL_FORMAT:
            raise ValueError(f"kind must be 'rgb' or 'mask', got {kind!r}")
        self.kind = kind
        super().__init__(path, width, height, "ffv1", _PIXEL_FORMAT[kind], fps, container_format="matroska")

    def write(self, chunk: torch.Tensor) -> None:
        self._encode(self._as_arrays(chunk), _INPUT_FORMAT[self.kind])

    def _as_arrays(self, chunk: torch.Tensor) -> np.ndarray:
        size = (self.height, self.width)
        if self.kind == "rgb":
            if chunk.dtype != torch.uint8 or tuple(chunk.shape[1:]) != (*size, 3):
                raise ValueError(f"{self.path}: expected uint8 images [t, {self.height}, {self.width}, 3], got {chunk.dtype} {tuple(chunk.shape)}")
            return chunk.cpu().numpy()
        if chunk.dtype != torch.bool or tuple(chunk.shape[1:]) != size:
            raise ValueError(f"{self.path}: expected bool masks [t, {self.height}, {self.width}], got {chunk.dtype} {tuple(chunk.shape)}")
        return chunk.cpu().numpy().astype(np.uint8) * 255


def write_lossless(path: str | Path, chunks: Iterable[torch.Tensor], width: int, height: int, kind: Kind = "rgb") -> int:
    """Write image or mask chunks to one FFV1 .mkv; returns the frame count."""
    with LosslessWriter(path, width, height, kind) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return writer.frames_written


def read_lossless_masks(path: str | Path) -> torch.Tensor:
    """All frames of a mask video as bool [T, H, W] (True = valid/rendered)."""
    return torch.cat([chunk[..., 0] > 127 for chunk in iter_frames(path)])
