"""The project's sample clip written as an MP4 at a test's size."""

from __future__ import annotations

from pathlib import Path

from inspatio_world.client import write_sample_video


def write_sample_mp4(folder: Path, frames: int, height: int, width: int, fps: float = 24) -> Path:
    return write_sample_video(folder / "clip.mp4", frames, height, width, fps)
