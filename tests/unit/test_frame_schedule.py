"""Frame schedule: time-freeze, bounce/subsample helpers and every branch of plan_frames, checked by hand."""

from __future__ import annotations

import pytest

from inspatio_world.geometry.frame_schedule import (
    bounce_indices,
    freeze_indices,
    needed_frame_range,
    plan_frames,
    subsample_indices,
)


def test_freeze_repeats_the_middle_frame_right_after_itself():
    assert freeze_indices(6, 2) == [0, 1, 2, 3, 3, 3, 4, 5]  # f = 6 // 2
    assert freeze_indices(5, 1, frame=0) == [0, 0, 1, 2, 3, 4]
    assert freeze_indices(4, 0, frame=2) == [0, 1, 2, 3]


def test_freeze_frame_is_clamped_into_the_video():
    assert freeze_indices(4, 2, frame=10) == [0, 1, 2, 3, 3, 3]
    assert freeze_indices(4, 1, frame=-5) == [0, 0, 1, 2, 3]
    with pytest.raises(ValueError):
        freeze_indices(0, 1)


def test_bounce_runs_forward_then_backward():
    assert bounce_indices(5, 13) == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4]
    assert bounce_indices(2, 5) == [0, 1, 0, 1, 0]
    assert bounce_indices(1, 3) == [0, 0, 0]


def test_bounce_falls_back_to_even_subsampling_when_long_enough():
    assert bounce_indices(9, 9) == list(range(9))
    assert bounce_indices(10, 4) == [0, 3, 6, 9]
    assert bounce_indices(200, 50)[:4] == [0, 4, 8, 12]  # floor(k * 199 / 49)
    assert subsample_indices(200, 51)[:4] == [0, 3, 7, 11]  # floor(k * 199 / 50): 3.98, 7.96, 11.94


def test_needed_frames_follow_the_angle_per_frame_limits():
    assert needed_frame_range(240.0, 50) == (301, 801)  # ceil(240 / 0.8) + 1, floor(240 / 0.3) + 1
    assert needed_frame_range(15.0, 50) == (20, 51)
    assert needed_frame_range(0.5, 50) == (2, 2)
    assert needed_frame_range(1e-3, 50) == (50, 50)  # pure zoom: no angle-based bounds


def test_short_clip_is_bounced_to_the_needed_length():
    plan = plan_frames(50, 50, traj_total_angle=240.0)
    assert (len(plan), plan.adjustment, plan.aligned_frames) == (301, "bounce", 50)
    assert plan.source_index[48:52] == (48, 49, 48, 47)
    assert plan.source_index[97:100] == (1, 0, 1)
    assert plan.render_index == plan.source_index  # no freeze: both index the same frames


def test_long_slow_clip_is_subsampled():
    plan = plan_frames(200, 200, traj_total_angle=15.0)
    assert (len(plan), plan.adjustment) == (51, "subsample")
    assert plan.source_index[:4] == (0, 3, 7, 11) and plan.source_index[-1] == 199


def test_clip_within_bounds_is_unchanged():
    plan = plan_frames(150, 160, traj_total_angle=60.0)  # needs [121, 201] frames, has 150
    assert plan.adjustment == "unchanged"
    assert plan.source_index == plan.render_index == tuple(range(150))


def test_pure_zoom_only_has_the_121_frame_minimum():
    assert plan_frames(60, 60, traj_total_angle=0.0).adjustment == "bounce"
    assert len(plan_frames(60, 60, traj_total_angle=0.0)) == 121
    assert plan_frames(300, 300, traj_total_angle=0.0).adjustment == "unchanged"


def test_freeze_happens_on_the_source_before_truncation():
    plan = plan_frames(5, 6, traj_total_angle=240.0, adaptive=False, freeze_repeat=2)
    # source order 0 1 2 2 2 3 4 (f = 2), cut to the 6 render frames
    assert plan.source_index == (0, 1, 2, 2, 2, 3)
    assert plan.render_index == tuple(range(6))
    assert (plan.adjustment, plan.aligned_frames) == ("disabled", 6)


def test_frozen_source_is_bounced_with_the_render():
    plan = plan_frames(4, 5, traj_total_angle=0.0, freeze_repeat=1, freeze_frame=1)
    # source order 0 1 1 2 3; render positions bounce 0 1 2 3 4 3 2 1 0 1
    assert plan.render_index[:10] == (0, 1, 2, 3, 4, 3, 2, 1, 0, 1)
    assert plan.source_index[:10] == (0, 1, 1, 2, 3, 2, 1, 1, 0, 1)
    assert len(plan) == 121


def test_short_render_truncates_the_frozen_source():
    plan = plan_frames(10, 8, traj_total_angle=1.0, adaptive=False, freeze_repeat=3, freeze_frame=2)
    assert plan.source_index == (0, 1, 2, 2, 2, 2, 3, 4)


def test_plan_needs_frames():
    with pytest.raises(ValueError):
        plan_frames(0, 5, traj_total_angle=10.0)
    with pytest.raises(ValueError):
        plan_frames(5, 0, traj_total_angle=10.0)
