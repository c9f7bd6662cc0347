"""What `inspatio run` tells before a job runs: the frame count it will give, and why."""

from __future__ import annotations

import pytest

from inspatio_world.cli.frame_notice import TooShort, frame_notice
from inspatio_world.client import JobOptions, write_sample_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {n: write_sample_video(folder / f"clip{n}.mp4", frames=n, height=64, width=96) for n in (5, 9, 300)}


def test_a_short_clip_is_bounced_to_upstreams_minimum(clips):
    line = frame_notice(clips[9], JobOptions(trajectory_name="pan_left.txt"), "pan_left")
    assert "9 frames; pan_left turns the camera 15.0 deg" in line
    assert "max(121, ceil(angle / 0.8) + 1) = 121 frames" in line and "121 frames in, 117 generated" in line
    assert "--no-adaptive-frames keeps the video's own 9 frames" in line


def test_a_long_clip_under_a_short_path_is_subsampled(clips):
    line = frame_notice(clips[300], JobOptions(trajectory_name="orbit_left.txt"), "orbit_left")
    assert "floor(angle / 0.3) + 1 = 67 frames, so the video is subsampled: 67 frames in, 57 generated" in line


def test_without_the_adaptive_rule_the_clip_keeps_its_length(clips):
    assert frame_notice(clips[9], JobOptions(trajectory_name="pan_left.txt", adaptive_frames=False), "pan_left") == \
        "clip9.mp4: 9 frames; 9 frames in, 9 generated (whole blocks)"  # fmt: skip


def test_render_only_counts_rendered_frames_and_a_too_short_clip_is_refused(clips):
    assert "121 frames rendered (no generation)" in frame_notice(clips[9], JobOptions(trajectory_name="pan_left.txt", render_only=True), "pan_left")
    with pytest.raises(TooShort, match="5 input frames make no whole 12-frame block"):
        frame_notice(clips[5], JobOptions(trajectory_name="pan_left.txt", adaptive_frames=False), "pan_left")
