"""Writing videos the way upstream does: H.264 (libx264, yuv420p) mp4 at 24 fps, 8-bit by truncation.

Frames are float tensors [T, 3, H, W] in [0, 1]; upstream hands `255 * x` to torchvision, which
converts with a plain uint8 cast, i.e. truncation rather than rounding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

OUTPUT_FPS = 24


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """[T, 3, H, W] float in [0, 1] -> [T, H, W, 3] uint8 (truncating 255*x, as upstream)."""
    return (255.0 * frames.float().clamp(0, 1)).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()


class Mp4Writer:
    """Appends frame chunks to an H.264 mp4 as they arrive (so a streamed video is written block by block)."""

    def __init__(self, path: str | Path, width: int, height: int, fps: int = OUTPUT_FPS) -> None:
        import av

        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self.frames_written = 0

    def write(self, frames: torch.Tensor) -> None:
        """frames: [T, 3, H, W] float in [0, 1]."""
        import av

        for image in to_uint8(frames).numpy():
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_mp4(path: str | Path, chunks: Iterable[torch.Tensor], width: int, height: int, fps: int = OUTPUT_FPS) -> int:
    """Write frame chunks ([T, 3, H, W] in [0, 1]) to one mp4; returns the frame count."""
    with Mp4Writer(path, width, height, fps) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return writer.frames_written


def read_frames(path: str | Path) -> torch.Tensor:
    """All frames of a video file as [T, 3, H, W] float in [0, 1] (RGB)."""
    import av

    with av.open(str(path)) as container:
        images = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
