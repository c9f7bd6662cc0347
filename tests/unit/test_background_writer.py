"""media.background_writer: chunks written in order by a thread of their own; errors reach the caller."""

from __future__ import annotations

import threading

import pytest
import torch

from inspatio_world.media.background_writer import BackgroundWriter
from inspatio_world.media.decode import read_images
from inspatio_world.media.lossless import LosslessWriter


class RecordingWriter:
    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None) -> None:
        self.chunks, self.closed, self.gate, self.fail_on = [], False, gate, fail_on

    def write(self, chunk) -> None:
        if self.gate is not None:
            assert self.gate.wait(timeout=10)
        if chunk == self.fail_on:
            raise OSError(f"disk full at chunk {chunk}")
        self.chunks.append(chunk)

    def close(self) -> None:
        self.closed = True


def test_write_returns_before_the_chunk_is_written_and_close_waits_for_all():
    gate = threading.Event()
    inner = RecordingWriter(gate)
    writer = BackgroundWriter(inner, max_pending=4)
    for chunk in range(3):
        writer.write(chunk)  # would block on the gate if written in this thread
    assert inner.chunks == []
    gate.set()
    writer.close()
    assert inner.chunks == [0, 1, 2] and inner.closed


def test_a_writer_error_reaches_the_caller_and_later_chunks_are_not_written():
    inner = RecordingWriter(fail_on=1)
    writer = BackgroundWriter(inner)
    for chunk in range(4):
        try:
            writer.write(chunk)
        except OSError:
            break
    with pytest.raises(OSError, match="disk full at chunk 1"):
        writer.close()
    assert inner.chunks == [0] and inner.closed


def test_a_lossless_video_written_in_the_background_is_exact(tmp_path):
    frames = torch.randint(0, 256, (5, 16, 24, 3), dtype=torch.uint8)
    with BackgroundWriter(LosslessWriter(tmp_path / "v.mkv", 24, 16)) as writer:
        for chunk in frames.split(2):
            writer.write(chunk)
    assert torch.equal(read_images(tmp_path / "v.mkv"), frames)
