"""A block event over the local-folder store: its reference is a file:// URL the SDK fetches."""

from __future__ import annotations

import torch

from inspatio_world.client import JobEvent, fetch_block, write_sample_video
from inspatio_world.media.decode import read_frames, read_images
from inspatio_world.media.lossless import write_lossless
from inspatio_world.rpc.convert import event_to_proto
from inspatio_world.stages.generate import BlockPublished
from inspatio_world.store.local import LocalStore


def test_block_event_of_a_local_store_fetches_the_exact_frames(tmp_path):
    store = LocalStore(tmp_path / "store")
    images = torch.randint(0, 256, (12, 32, 48, 3), dtype=torch.uint8)
    write_lossless(tmp_path / "block.mkv", [images], 48, 32)
    store.put_file("cache/generate/x/block_0001.mkv", tmp_path / "block.mkv")
    published = BlockPublished(1, 3, 9, 12, "cache/generate/x/block_0001.mkv", 0.5)
    event = JobEvent.from_proto(event_to_proto(store, "job-1", published))
    assert (event.kind, event.block_index, event.first_frame, event.frames) == ("block", 1, 9, 12)
    assert event.chunk_url.startswith("file://")
    (tmp_path / "blocks").mkdir()
    path = fetch_block(event, tmp_path / "blocks")
    assert path == tmp_path / "blocks" / "block_0001.mkv"
    assert torch.equal(read_images(path), images)  # lossless: the very same pixels


def test_sample_video_is_a_readable_clip(tmp_path):
    path = write_sample_video(tmp_path / "street.mp4", frames=9, height=64, width=96)
    assert read_frames(path).shape == (9, 3, 64, 96)
