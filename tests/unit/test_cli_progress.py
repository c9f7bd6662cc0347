"""`inspatio run`'s progress display: running stages, blocks, an honest ETA, plain lines when redirected."""

from __future__ import annotations

import io
import time

from inspatio_world.cli.progress import JobProgress
from inspatio_world.client.sdk import JobEvent, JobStatus


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def started(stage):
    return JobEvent("stage_started", "j1", stage=stage)


def finished(stage, seconds, cached=False):
    return JobEvent("stage_finished", "j1", stage=stage, seconds=seconds, cache_hit=cached)


def block(index, blocks, seconds):
    return JobEvent("block", "j1", stage="generate", seconds=seconds, block_index=index, blocks=blocks, frames=12)


def status(state="succeeded", timings=None, error="", blocks=(3, 3)):
    timings = timings or {"caption": (1.5, False), "depth": (4.0, False), "render": (2.0, False),
                          "generate": (9.0, False)}
    return JobStatus("j1", state, "a caption", blocks[0], blocks[1], error, timings)


def plain(events, final, elapsed=0.0):
    out, clock = io.StringIO(), FakeClock()
    progress = JobProgress("clip.mp4", stream=out, interactive=False, clock=clock)
    for event in events:
        progress.on_event(event)
    clock.now += elapsed
    progress.close(final)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    return text.splitlines()


def test_plain_lines_for_a_normal_job():
    events = [started("depth"), started("caption"), finished("caption", 1.5), finished("depth", 4.0),
              started("render"), finished("render", 2.0), started("generate"),
              block(0, 3, 5.0), block(1, 3, 2.0), block(2, 3, 2.0), finished("generate", 9.0)]  # fmt: skip
    lines = plain(events, status(), elapsed=88.4)
    assert lines == [
        "clip.mp4: depth: started",
        "clip.mp4: caption: started",
        "clip.mp4: caption: done in 1.50 s",
        "clip.mp4: depth: done in 4.00 s",
        "clip.mp4: render: started",
        "clip.mp4: render: done in 2.00 s",
        "clip.mp4: generate: started",
        "clip.mp4: generate: block 1/3 (5.00 s)",
        "clip.mp4: generate: block 2/3 (2.00 s)",
        "clip.mp4: generate: block 3/3 (2.00 s)",
        "clip.mp4: generate: done in 9.00 s",
        "clip.mp4: succeeded in 1:28",
    ]


def test_plain_lines_for_a_job_with_a_prompt():
    events = [started("depth"), finished("depth", 4.0), started("render"), finished("render", 2.0),
              started("generate"), block(0, 1, 5.0), finished("generate", 5.0)]  # fmt: skip
    # The caption the prompt replaced is recorded as 0 s, not cached: no "every stage from the cache".
    timings = {"caption": (0.0, False), "depth": (4.0, False), "render": (2.0, False), "generate": (5.0, False)}
    lines = plain(events, status(timings=timings, blocks=(1, 1)))
    assert not any("caption" in line for line in lines)
    assert lines[0] == "clip.mp4: depth: started"
    assert lines[-1] == "clip.mp4: succeeded in 0 s"


def test_plain_lines_for_a_fully_cached_job():
    events = [started("depth"), started("caption"), finished("caption", 0.19, True), finished("depth", 0.2, True),
              started("render"), finished("render", 0.1, True),
              started("generate"), finished("generate", 0.3, True)]  # fmt: skip
    timings = {"caption": (0.19, True), "depth": (0.2, True), "render": (0.1, True), "generate": (0.3, True)}
    lines = plain(events, status(timings=timings, blocks=(0, 0)))
    assert "clip.mp4: caption: done in 0.19 s (cached)" in lines
    assert "clip.mp4: generate: done in 0.30 s (cached)" in lines
    assert not any("block" in line for line in lines)
    assert lines[-1] == "clip.mp4: succeeded in 0 s, every stage from the cache"


def test_plain_lines_for_a_failed_job():
    events = [started("depth"), started("caption"), finished("caption", 1.5), finished("depth", 4.0), started("render")]
    final = status("failed", {"caption": (1.5, False), "depth": (4.0, False)}, "ValueError: bad trajectory", (0, 0))
    lines = plain(events, final)
    assert lines[-2:] == ["clip.mp4: render: started", "clip.mp4: failed in 0 s: ValueError: bad trajectory"]


def interactive():
    out, clock = io.StringIO(), FakeClock()
    return JobProgress("clip.mp4", stream=out, interactive=True, clock=clock, tick=None), out, clock


def test_status_line_names_every_running_stage():
    progress, out, clock = interactive()
    progress.on_event(started("depth"))
    progress.on_event(started("caption"))
    clock.now += 3
    progress.refresh()  # what the ticker does: the clock moves with no event
    assert progress.line() == "clip.mp4  caption + depth 3 s"
    assert out.getvalue().endswith("\rclip.mp4  caption + depth 3 s\x1b[K")
    progress.on_event(finished("caption", 3.0))
    clock.now += 9
    assert progress.line() == "clip.mp4  depth 12 s"
    progress.on_event(finished("depth", 12.0))
    progress.on_event(started("render"))
    assert progress.line() == "clip.mp4  render 0 s"
    progress.on_event(finished("render", 2.0))
    assert progress.line() == "clip.mp4  render done"  # until generate starts
    assert "\n" not in out.getvalue()  # one line, rewritten in place


def test_eta_only_from_the_blocks_after_the_first():
    progress, out, clock = interactive()
    progress.on_event(started("generate"))
    clock.now += 30
    assert progress.line() == "clip.mp4  generate 30 s"  # waiting for the first block: no counter, no ETA
    progress.on_event(block(0, 10, 30.0))  # the first block includes warm-up
    assert progress.line() == "clip.mp4  generate 30 s  blocks 1/10"
    assert progress.eta() is None
    for index, seconds in ((1, 2.0), (2, 4.0)):
        clock.now += seconds
        progress.on_event(block(index, 10, seconds))
    # 7 blocks left at the mean of blocks 2..3 (3 s), not the 12 s mean that counts the warm-up.
    assert progress.eta() == 7 * 3.0
    assert progress.line() == "clip.mp4  generate 36 s  blocks 3/10  ETA 21 s"
    clock.now += 5  # counts down between blocks
    assert progress.line().endswith("ETA 16 s")


def test_cached_generation_shows_no_empty_block_counter():
    progress, out, clock = interactive()
    for event in [started("depth"), finished("depth", 0.2, True), started("render"), finished("render", 0.1, True),
                  started("generate"), finished("generate", 0.3, True)]:  # fmt: skip
        progress.on_event(event)
    assert progress.line() == "clip.mp4  generate (cached)"
    timings = {"caption": (0.0, False), "depth": (0.2, True), "render": (0.1, True), "generate": (0.3, True)}
    progress.on_event(JobEvent("finished", "j1", status=status(timings=timings, blocks=(0, 0))))
    progress.close(None)  # idempotent: a second close writes nothing
    text = out.getvalue()
    assert "0/0" not in text
    assert text.endswith("\rclip.mp4: succeeded in 0 s, every stage from the cache\x1b[K\n")


def test_line_is_cut_short_of_the_terminal_width(monkeypatch):
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a, **k: __import__("os").terminal_size((20, 24)))
    progress, out, clock = interactive()
    progress.on_event(started("caption"))
    progress.on_event(started("depth"))
    assert out.getvalue().endswith("\rclip.mp4  caption +\x1b[K")  # 19 characters


def test_ticker_redraws_and_close_stops_it():
    out = io.StringIO()
    progress = JobProgress("clip.mp4", stream=out, interactive=True, tick=0.01)
    progress.on_event(started("depth"))
    deadline = time.monotonic() + 5
    while out.getvalue().count("\r") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert out.getvalue().count("\r") >= 3  # redrawn with no new event
    progress.close(status())
    assert not progress._ticker.is_alive()
    progress.close(status())
    assert out.getvalue().count("succeeded") == 1


def test_a_terminal_is_detected_from_the_stream():
    assert JobProgress("x", stream=io.StringIO(), tick=None).interactive is False
