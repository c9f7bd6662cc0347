"""Reordering decoded frames onto a schedule (render-only jobs' videos): one decoding pass, any
order (bounce, repeats, subsampling), and only the frames still needed are held."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.stages.render_videos import frames_in_order


def _chunks(count: int, size: int = 3):
    frames = torch.arange(count).view(count, 1)
    return [frames[i : i + size] for i in range(0, count, size)]


@pytest.mark.parametrize("order", [
    [0, 1, 2, 3, 4, 5, 6],                 # as decoded
    [0, 2, 4, 6],                          # subsampled
    [0, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1],  # bounced
    [0, 1, 3, 3, 3, 3, 4],                 # a frozen frame
    [6, 0],                                # backwards
])  # fmt: skip
def test_frames_come_in_the_schedule_order(order):
    assert [int(f) for f in frames_in_order(_chunks(7), order)] == order


def test_a_monotone_order_decodes_only_as_far_as_needed():
    decoded = []

    def chunks():
        for chunk in _chunks(50):
            decoded.append(len(chunk))
            yield chunk

    order = list(range(0, 50, 2))
    out = frames_in_order(chunks(), order)
    for position, frame in enumerate(out):
        # lazily decoded: never more than one chunk ahead of the frame asked for
        assert sum(decoded) <= order[position] + 3
        assert int(frame) == order[position]


def test_an_index_past_the_end_is_an_error():
    with pytest.raises(ValueError, match="frame 9 is past the end of the video \\(7 frames\\)"):
        list(frames_in_order(_chunks(7), [0, 9]))
