"""The project's synthetic street clip as an mp4, so the SDK can be tried without a video of one's own."""

from __future__ import annotations

from pathlib import Path


def write_sample_video(path: str | Path = "street.mp4", frames: int = 49, height: int = 240, width: int = 416,
                       fps: float = 24) -> Path:  # fmt: skip
    """Write the sample clip (sky, ground, boxes moving with parallax; H.264 mp4, 24 fps unless `fps`); returns its path."""
    # imported here, not at module level: the SDK itself must not load torch or PyAV
    from ..media.video_io import write_mp4
    from ..pipeline.sample_clip import make_sample_clip

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clip = make_sample_clip(frames, height, width)
    write_mp4(path, [clip.source * 0.5 + 0.5], width, height, fps)  # the clip is in [-1, 1], mp4 frames in [0, 1]
    return path
