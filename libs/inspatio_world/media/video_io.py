"""Writing videos the way upstream does: H.264 (libx264, yuv420p) mp4 at 24 fps, 8-bit by truncation.

Float frames are [T, 3, H, W] in [0, 1]; upstream hands `255 * x` to torchvision, which converts
with a plain uint8 cast, i.e. truncation rather than rounding. 8-bit images are [T, H, W, 3] uint8
(RGB), the layout encoders and decoders use. Reading lives in `decode` (`read_frames` is re-exported
here); the exact, lossless intermediate format in `lossless`.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import torch

from .decode import read_frames
from .stream_writer import StreamWriter

__all__ = ["OUTPUT_FPS", "Mp4Writer", "read_frames", "to_uint8", "write_mp4"]

OUTPUT_FPS = 24


def stream_rate(fps: float) -> Fraction | int:
    """A container frame rate for `fps` (v1.5 writes at the source's: 25, 29.97 = 30000/1001, ...)."""
    rate = Fraction(fps).limit_denominator(1001)
    return int(rate) if rate.denominator == 1 else rate


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """[T, 3, H, W] float in [0, 1] -> [T, H, W, 3] uint8 (truncating 255*x, as upstream)."""
    return (255.0 * frames.float().clamp(0, 1)).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()


class Mp4Writer(StreamWriter):
    """Appends frame chunks to an H.264 mp4 as they arrive (so a streamed video is written block by block).

    `crf=None` keeps libx264's default (23), which is what upstream's torchvision outputs use; the
    renderer's render/mask videos use crf 18. `growing=True` writes a file that players can open while
    it grows (a preview): fragmented mp4, one fragment per frame, no encoder look-ahead; every frame but
    the newest is in the file as soon as it is written.
    """

    GROWING_MP4 = {"movflags": "empty_moov+default_base_moof+frag_every_frame", "flush_packets": "1"}

    def __init__(self, path: str | Path, width: int, height: int, fps: float = OUTPUT_FPS, crf: int | None = None,
                 growing: bool = False) -> None:  # fmt: skip
        if width % 2 or height % 2:  # yuv420p halves the chroma planes; libx264 refuses odd sizes
            raise ValueError(f"{path}: H.264 yuv420p needs an even width and height, got {width}x{height}")
        options = {"crf": str(crf)} if crf is not None else {}
        if growing:
            options["tune"] = "zerolatency"
        super().__init__(path, width, height, "libx264", "yuv420p", stream_rate(fps), options=options or None,
                         container_options=self.GROWING_MP4 if growing else None)  # fmt: skip

    def write(self, frames: torch.Tensor) -> None:
        """frames: [T, 3, H, W] float in [0, 1]."""
        self.write_images(to_uint8(frames))

    def write_images(self, images: torch.Tensor) -> None:
        """images: [T, H, W, 3] uint8 RGB, for callers that do their own 8-bit conversion."""
        if images.dtype != torch.uint8 or tuple(images.shape[1:]) != (self.height, self.width, 3):
            # PyAV would silently rescale a wrongly sized frame to the stream size
            raise ValueError(f"{self.path}: expected uint8 images [T, {self.height}, {self.width}, 3], got {images.dtype} {tuple(images.shape)}")
        self._encode(images.cpu().numpy(), "rgb24")


def write_mp4(path: str | Path, chunks: Iterable[torch.Tensor], width: int, height: int, fps: float = OUTPUT_FPS) -> int:
    """Write frame chunks ([T, 3, H, W] in [0, 1]) to one mp4; returns the frame count."""
    with Mp4Writer(path, width, height, fps) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return writer.frames_written
