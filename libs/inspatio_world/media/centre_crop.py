"""v1.5's resize: scale to cover the output size, then crop its centre (upstream v1.5 prepares a video with
ffmpeg `-vf scale=832:480:force_original_aspect_ratio=increase,crop=832:480`; v1 stretches instead).

The frames go through the same FFmpeg filters (libavfilter, through PyAV), with the size and offsets
worked out here as those filters work them out for a yuv420p video, so the crop lands on the same
pixels: the scaled size keeps the aspect ratio, rounded to the nearest pixel (av_rescale), and the
crop offset is (scaled - output) / 2 rounded to even (lrint), then aligned down to the chroma grid
(even). Upstream then re-encodes the crop with libx264; here the frames stay as they are (no second
lossy step). The filters run on yuv420p, as on upstream's video: the decoded RGB frames are converted
back (FFmpeg's default conversion), which restores a yuv420p video's own samples up to rounding.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch


def cover_size(width: int, height: int, out_width: int, out_height: int) -> tuple[int, int]:
    """The size (w, h) a (width x height) frame is scaled to so that it covers (out_width x out_height)."""
    if min(width, height, out_width, out_height) < 1:
        raise ValueError(f"sizes must be positive: {width}x{height} -> {out_width}x{out_height}")
    scaled_w = _rescale(out_height, width, height)  # av_rescale(h, in_w, in_h): round half away from zero
    scaled_h = _rescale(out_width, height, width)
    return max(scaled_w, out_width), max(scaled_h, out_height)


def crop_offsets(scaled_width: int, scaled_height: int, out_width: int, out_height: int) -> tuple[int, int]:
    """(x, y) of the centred crop: lrint((in - out) / 2), aligned down to even (yuv420p chroma)."""
    return (int(np.rint((scaled_width - out_width) / 2)) & ~1, int(np.rint((scaled_height - out_height) / 2)) & ~1)


def centre_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 RGB images [T, H, W, 3] -> [T, out_h, out_w, 3], `size` = (out_w, out_h); frames of the
    output size are returned as they are (upstream links, not re-encodes, a 832x480 video)."""
    out_w, out_h = size
    count, height, width = images.shape[:3]
    if (width, height) == (out_w, out_h):
        return images
    scaled_w, scaled_h = cover_size(width, height, out_w, out_h)
    x, y = crop_offsets(scaled_w, scaled_h, out_w, out_h)
    graph = _Graph(width, height, f"{scaled_w}:{scaled_h}:flags=bicubic", f"{out_w}:{out_h}:{x}:{y}")
    return torch.from_numpy(np.stack([graph.run(image) for image in images.numpy()])) if count else images.new_empty((0, out_h, out_w, 3))


def _rescale(a: int, b: int, c: int) -> int:
    """a * b / c rounded to the nearest integer, halves away from zero (FFmpeg's av_rescale)."""
    return int(Fraction(a * b, c) + Fraction(1, 2)) if a * b >= 0 else -int(Fraction(-a * b, c) + Fraction(1, 2))


class _Graph:
    """buffer (yuv420p) -> scale -> crop -> buffersink, one frame at a time."""

    def __init__(self, width: int, height: int, scale: str, crop: str) -> None:
        import av

        self._graph = av.filter.Graph()
        source = self._graph.add_buffer(width=width, height=height, format="yuv420p", time_base=Fraction(1, 25))
        chain = [source, self._graph.add("scale", scale), self._graph.add("crop", crop), self._graph.add("buffersink")]
        for upstream, downstream in zip(chain, chain[1:]):
            upstream.link_to(downstream)
        self._graph.configure()
        self._pts = 0

    def run(self, image: np.ndarray) -> np.ndarray:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format="yuv420p")
        frame.pts, self._pts = self._pts, self._pts + 1
        self._graph.push(frame)
        return self._graph.pull().to_ndarray(format="rgb24")
