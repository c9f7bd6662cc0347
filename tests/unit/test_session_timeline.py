"""Source frames of a live session's output positions: bounce and freeze."""

from __future__ import annotations

import pytest

from inspatio_world.sessions.timeline import source_frames


def test_bounce_runs_forward_then_back():
    assert source_frames(4, 12) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]


def test_short_sessions_start_at_frame_0_in_order():
    assert source_frames(10, 4) == [0, 1, 2, 3]  # not the subsample a job's bounce_indices gives


def test_freeze_stops_at_the_last_frame():
    assert source_frames(3, 6, "freeze") == [0, 1, 2, 2, 2, 2]


def test_a_single_frame_repeats():
    assert source_frames(1, 3) == source_frames(1, 3, "freeze") == [0, 0, 0]


def test_unknown_policies_are_refused():
    with pytest.raises(ValueError, match="time policy"):
        source_frames(3, 3, "rewind")
