"""v1.5's frame rule: pad to whole 3-latent blocks by repeating the last frame (geometry/frame_schedule)."""

from __future__ import annotations

import pytest

from inspatio_world.geometry.frame_schedule import pad_indices, padded_frame_count, plan_padded


@pytest.mark.parametrize("frames, padded", [(1, 9), (2, 9), (9, 9), (10, 21), (21, 21), (22, 33), (247, 249)])
def test_padded_frame_count_is_whole_blocks(frames, padded):
    assert padded_frame_count(frames) == padded
    latents = 1 + (padded - 1) // 4
    assert (padded - 1) % 4 == 0 and latents % 3 == 0


def test_padding_repeats_the_last_frame():
    assert pad_indices(10) == list(range(10)) + [9] * 11
    assert pad_indices(9) == list(range(9))


def test_plan_keeps_every_frame_once_and_remembers_the_real_count():
    plan = plan_padded(12, 11)
    assert plan.source_index == plan.render_index == tuple(range(11)) + (10,) * 10
    assert plan.aligned_frames == 11 and plan.adjustment == "padded"
    with pytest.raises(ValueError):
        padded_frame_count(0)
