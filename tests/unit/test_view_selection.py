"""Which view anchors each latent of a four-view image job (upstream v1.5 select_chunk_top3); the
upstream-made fixtures are in tests/parity/v15_images, these pin the documented rules."""

from __future__ import annotations

import pytest

from inspatio_world.geometry.view_selection import latent_coverage, latent_frame_groups, select_chunk_top3


def test_latent_groups_are_frame_zero_then_fours():
    assert latent_frame_groups(9) == [range(0, 1), range(1, 5), range(5, 9)]
    assert len(latent_frame_groups(21)) == 6
    assert latent_frame_groups(7) == [range(0, 1), range(1, 5), range(5, 7)]  # a short last group counts, as upstream
    assert latent_frame_groups(1) == [range(0, 1)]
    with pytest.raises(ValueError):
        latent_frame_groups(0)


def test_top_three_views_by_block_total_each_once_with_best_assignment():
    scores = [[10, 0, 5, 1],
              [0, 10, 5, 1],
              [9, 9, 9, 20]]  # fmt: skip
    choices, kept = select_chunk_top3(scores)
    assert kept == [[3, 0, 1]]  # totals 19, 19, 19, 22: view 3 first, then the ties by index (view 2 left out)
    assert choices == [0, 1, 3]  # 10 + 10 + 20, the best of the 6 assignments
    assert sorted(choices) == sorted(kept[0])


def test_ties_go_to_lower_view_indices():
    choices, kept = select_chunk_top3([[5, 5, 5, 5]] * 6)
    assert kept == [[0, 1, 2], [0, 1, 2]]
    assert choices == [0, 1, 2, 0, 1, 2]  # equal sums: the smallest tuple


def test_blocks_are_chosen_independently():
    block_a = [[0, 0, 9, 9]] * 3
    block_b = [[9, 9, 0, 0]] * 3
    _, kept = select_chunk_top3(block_a + block_b)
    assert kept[0][:2] == [2, 3] and kept[1][:2] == [0, 1]


@pytest.mark.parametrize("scores", [[[1, 2, 3, 4]] * 4, [[1, 2, 3]] * 3, [[1, 2, 3, 4, 5]] * 3])
def test_needs_whole_blocks_and_four_views(scores):
    with pytest.raises(ValueError, match="whole blocks of 3 latents and 4 views"):
        select_chunk_top3(scores)


def test_coverage_sums_the_frames_of_each_latent():
    per_frame = [[f, 1, 0, 2 * f] for f in range(9)]
    assert latent_coverage(per_frame, 9) == [[0, 1, 0, 0], [1 + 2 + 3 + 4, 4, 0, 20], [5 + 6 + 7 + 8, 4, 0, 52]]
    with pytest.raises(ValueError):
        latent_coverage(per_frame, 10)
