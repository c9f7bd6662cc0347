"""The project's sample clip written as an MP4 at a test's size."""

from __future__ import annotations

from pathlib import Path

from inspatio_world.media.video_io import write_mp4
from inspatio_world.pipeline.sample_clip import make_sample_clip


def write_sample_mp4(folder: Path, frames: int, height: int, width: int) -> Path:
    clip = make_sample_clip(frames, height, width)
    path = folder / "clip.mp4"
    write_mp4(path, [clip.source * 0.5 + 0.5], width, height)
    return path
