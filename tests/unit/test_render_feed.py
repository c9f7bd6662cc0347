"""RenderFeed renders only what the next block reads, and fills plan positions (bounced, repeated)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from inspatio_world.geometry.frame_schedule import FramePlan, bounce_indices
from inspatio_world.pipeline.generator import conditioning_frames
from inspatio_world.stages.render_feed import RenderFeed


class _FakeWork:
    """A RenderWork of `frames` render frames in chunks of 4: frame f is grey level 10 f, every other pixel rendered."""

    def __init__(self, frames: int, render_index: list[int]) -> None:
        self.frames, self.rendered, self.height, self.width = frames, 0, 2, 2
        self.plan = FramePlan(tuple(render_index), tuple(render_index), frames, "bounce")

    def next_chunk(self):
        span = slice(self.rendered, min(self.rendered + 4, self.frames))
        self.rendered = span.stop
        levels = torch.arange(span.start, span.stop, dtype=torch.uint8) * 10
        render = levels[:, None, None, None].expand(-1, 2, 2, 3).contiguous()
        mask = torch.tensor([[True, False], [False, True]]).expand(span.stop - span.start, 2, 2)
        return span, render, mask


def test_the_first_block_reads_9_frames_with_the_wan_vae_and_12_with_taehv():
    assert conditioning_frames(slice(0, 3), "wan_vae", 100) == 9
    assert conditioning_frames(slice(3, 6), "wan_vae", 100) == 21
    assert conditioning_frames(slice(0, 3), "taehv", 100) == 12
    assert conditioning_frames(slice(3, 6), "taehv", 20) == 20  # the video's end


def test_feed_renders_only_the_frames_the_positions_need_and_fills_every_position():
    index = bounce_indices(6, 14)  # 0..5, 4..0, 1, 2, 3: render frames revisited out of order
    work = _FakeWork(6, index)
    feed = RenderFeed(work)
    feed.ensure(3)  # positions 0-2 show frames 0-2: one chunk
    assert work.rendered == 4
    feed.ensure(4)  # frame 3 was in that chunk
    assert work.rendered == 4
    feed.ensure(7)  # position 5 shows frame 5
    assert work.rendered == 6
    expected = torch.tensor(index, dtype=torch.float32) * 10 / 255 * 2 - 1  # to_render_values of level 10 f
    assert torch.equal(feed.render[:, 0, 0, 0], expected) and torch.equal(feed.render[:, 2, 1, 1], expected)
    assert torch.equal(feed.mask[:, :, 0, 0], torch.ones(14, 3)) and torch.equal(feed.mask[:, :, 0, 1], -torch.ones(14, 3))


def test_feed_stops_between_chunks():
    calls = []
    feed = RenderFeed(_FakeWork(8, list(range(8))), should_stop=lambda: calls.append(1))
    feed.finish()
    assert len(calls) == 2
