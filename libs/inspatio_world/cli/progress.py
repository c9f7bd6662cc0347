"""Progress of one job on the terminal: the running stages, blocks, an honest ETA, and a final line.

On a terminal one status line is rewritten in place and a ticker keeps its clocks moving (depth and
the first block can take a while with no event). Redirected, it writes plain lines, one per event.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import Callable, TextIO

STAGE_ORDER = ("caption", "depth", "render", "generate")


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60}:{seconds % 60:02d}"


def _stage_key(stage: str) -> tuple[int, str]:
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), stage)


class JobProgress:
    """Feed every JobEvent of one job to `on_event`, then call `close(status)` (also safe in a finally)."""

    def __init__(self, name: str, stream: TextIO | None = None, interactive: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, tick: float | None = 0.5) -> None:  # fmt: skip
        self.name = name
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.clock = clock
        self._lock = threading.RLock()
        self._started = clock()
        self._running: dict[str, float] = {}  # stage -> when it started
        self._blocks_done = self._blocks_total = self._blocks_seen = 0
        self._first_block_at = self._last_block_at = 0.0
        self._last_done = ""  # shown between stages, e.g. "generate (cached)" instead of "blocks 0/0"
        self._closed = False
        self._stop = threading.Event()
        self._ticker = None
        if self.interactive and tick:  # tick=None: no thread (tests call refresh() themselves)
            self._ticker = threading.Thread(target=self._tick, args=(tick,), name=f"progress-{name}", daemon=True)
            self._ticker.start()

    def on_event(self, event) -> None:
        if event.kind == "finished" and event.status is not None:
            self.close(event.status)  # not under the lock: close joins the ticker, which takes it
            return
        with self._lock:
            if self._closed:
                return
            now = self.clock()
            if event.kind == "stage_started":
                self._running[event.stage] = now
                self._plain(f"{event.stage}: started")
            elif event.kind == "stage_finished":
                self._running.pop(event.stage, None)
                self._last_done = f"{event.stage} {'(cached)' if event.cache_hit else 'done'}"
                self._plain(f"{event.stage}: done in {event.seconds:.2f} s{' (cached)' if event.cache_hit else ''}")
            elif event.kind == "block":
                self._blocks_done, self._blocks_total = event.block_index + 1, event.blocks
                self._blocks_seen += 1
                if self._blocks_seen == 1:
                    self._first_block_at = now
                self._last_block_at = now
                self._plain(f"generate: block {self._blocks_done}/{self._blocks_total} ({event.seconds:.2f} s)")
            self.refresh()

    def eta(self) -> float | None:
        """Seconds left, from the pace of the blocks after the first (which includes warm-up); None if unknown."""
        with self._lock:
            remaining = self._blocks_total - self._blocks_done
            if self._blocks_seen < 2 or remaining <= 0:
                return None
            per_block = (self._last_block_at - self._first_block_at) / (self._blocks_seen - 1)
            return max(0.0, remaining * per_block - (self.clock() - self._last_block_at))

    def line(self) -> str:
        """The status line as it stands now (without terminal codes)."""
        with self._lock:
            now = self.clock()
            parts = [self.name]
            if self._running:
                stages = sorted(self._running, key=_stage_key)
                parts.append(f"{' + '.join(stages)} {_duration(now - min(self._running.values()))}")
            elif self._last_done:
                parts.append(self._last_done)
            else:
                parts.append(f"waiting {_duration(now - self._started)}")
            if self._blocks_total:
                parts.append(f"blocks {self._blocks_done}/{self._blocks_total}")
            eta = self.eta()
            if eta is not None:
                parts.append(f"ETA {_duration(eta)}")
            return "  ".join(parts)

    def refresh(self) -> None:
        """Redraw the status line in place (interactive only); the ticker calls this."""
        with self._lock:
            if self.interactive and not self._closed:
                self._draw(self.line())

    def close(self, status=None) -> None:
        """Stop the ticker and write the final line (or just end the status line when status is None)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            if status is not None:
                text = f"{self.name}: {status.state} in {_duration(self.clock() - self._started)}"
                # A stage that never ran (caption under a user's prompt) is recorded as 0 s, not cached.
                ran = [hit for seconds, hit in status.timings.values() if hit or seconds > 0]
                if status.state == "succeeded" and ran and all(ran):
                    text += ", every stage from the cache"
                if status.error:
                    text += f": {status.error}"
                # In full even on a terminal: the last line may wrap, an error must not be cut.
                self.stream.write(f"\r{text}\x1b[K\n" if self.interactive else text + "\n")
            elif self.interactive:
                self.stream.write("\n")
            self.stream.flush()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join()

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.refresh()

    def _draw(self, text: str) -> None:
        width = shutil.get_terminal_size().columns
        self.stream.write("\r" + text[: max(1, width - 1)] + "\x1b[K")  # short of the width: never wraps
        self.stream.flush()

    def _plain(self, text: str) -> None:
        if not self.interactive:
            self.stream.write(f"{self.name}: {text}\n")
            self.stream.flush()
