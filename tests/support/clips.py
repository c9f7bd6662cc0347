"""The project's sample clip written as an MP4 at a test's size."""

from __future__ import annotations

from pathlib import Path

from inspatio_world.client import write_sample_video


def write_sample_mp4(folder: Path, frames: int, height: int, width: int, fps: float = 24) -> Path:
    return write_sample_video(folder / "clip.mp4", frames, height, width, fps)


# Mean absolute difference (0-255 levels) allowed between the decoded H.264 outputs of two runs of the
# same job: x264 output is not reproducible run to run (CI, on 2 loaded cores, once saw 0.90 on the
# compare video). A wrong video differs by tens of levels; exact equality is held on the lossless files.
H264_RUN_TO_RUN_LEVELS = 2.0
