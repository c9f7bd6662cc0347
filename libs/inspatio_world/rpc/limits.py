"""Bounded concurrency: heavy (GPU) RPCs, and long-lived streams.

`ConcurrencyLimiter`: a few heavy calls run, a few wait in line, the rest are refused. A GPU replica
runs one job at a time by default: two jobs on one GPU each run slower and together may run out of
memory. Waiting calls queue in arrival order up to `max_queue`; beyond that a call is refused at once
(`ServerBusy` → RESOURCE_EXHAUSTED), so a client or load balancer can try another replica instead of
waiting behind an unbounded line.

`StreamLimit`: at most so many streams open at once, the rest refused at once (`TooManyStreams`, a
`ServerBusy`). A stream (a coordinator's WatchJob, an upload) lasts as long as its client keeps it
open and holds a server thread all that time; bounding them keeps threads free for everything else.

This module knows nothing of gRPC; the server's interceptor maps its exceptions to status codes
(see errors.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol


BUSY_RETRY_AFTER_S = 1.0  # the RetryInfo a busy server sends: where a client's backoff starts, not a promise


class ServerBusy(Exception):
    retry_after_s = BUSY_RETRY_AFTER_S  # sent as RetryInfo (errors.py)

    def __init__(self, running: int, queued: int) -> None:
        super().__init__(f"server busy: {running} running, {queued} queued; retry later")


class TooManyStreams(ServerBusy):
    def __init__(self, limit: int) -> None:
        Exception.__init__(self, f"too many open streams: this server keeps at most {limit} open at once "
                                 f"(INSPATIO_MAX_STREAMS); retry later or on another replica")


class QueueTimeout(Exception):
    def __init__(self, waited: float) -> None:
        super().__init__(f"deadline expired after {waited:.2f} s waiting in the queue for a free slot")


class QueueCancelled(Exception):
    def __init__(self) -> None:
        super().__init__("cancelled while waiting in the queue")


class QueueGauge(Protocol):
    """What the limiter reports queue depth to (a prometheus Gauge fits)."""

    def inc(self) -> None: ...

    def dec(self) -> None: ...


class _Waiter:
    def __init__(self) -> None:
        self.wake = threading.Event()
        self.granted = False  # the slot was handed over by `release`
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.wake.set()


class ConcurrencyLimiter:
    """At most `max_in_flight` holders of a slot, at most `max_queue` callers waiting for one (FIFO)."""

    def __init__(self, max_in_flight: int = 1, max_queue: int = 4) -> None:
        if max_in_flight < 1 or max_queue < 0:
            raise ValueError(f"need max_in_flight >= 1 and max_queue >= 0, got {max_in_flight}, {max_queue}")
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self._lock = threading.Lock()
        self._running = 0
        self._waiting: deque[_Waiter] = deque()

    @property
    def capacity(self) -> int:
        return self.max_in_flight + self.max_queue

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def acquire(
        self,
        timeout: float | None = None,
        on_cancel: Callable[[Callable[[], None]], None] | None = None,
        queue_gauge: QueueGauge | None = None,
    ) -> None:
        """Take a slot, waiting in line up to `timeout` seconds; pair every success with `release()`.

        `on_cancel` receives a function that abandons the wait (the server passes it to the RPC's
        termination callback, so a caller that went away leaves the line at once).
        Raises ServerBusy (line full), QueueTimeout or QueueCancelled.
        """
        with self._lock:
            # A free slot implies an empty line: `release` hands slots straight to the first waiter.
            if self._running < self.max_in_flight:
                self._running += 1
                return
            if len(self._waiting) >= self.max_queue:
                raise ServerBusy(self._running, len(self._waiting))
            waiter = _Waiter()
            self._waiting.append(waiter)
        started = time.monotonic()
        if queue_gauge is not None:
            queue_gauge.inc()
        try:
            if on_cancel is not None:
                on_cancel(waiter.cancel)
            waiter.wake.wait(timeout)
            with self._lock:
                if waiter.granted and not waiter.cancelled:
                    return
                if waiter.granted:
                    self._release_locked()  # granted and cancelled at once: pass the slot on
                else:
                    self._waiting.remove(waiter)
        finally:
            if queue_gauge is not None:
                queue_gauge.dec()
        if waiter.cancelled:
            raise QueueCancelled()
        raise QueueTimeout(time.monotonic() - started)

    def release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        if self._waiting:
            waiter = self._waiting.popleft()
            waiter.granted = True  # the slot changes hands; `_running` stays the same
            waiter.wake.set()
        else:
            self._running -= 1


class StreamLimit:
    """At most `max_open` streams open at once; one more is refused at once, never queued."""

    def __init__(self, max_open: int) -> None:
        if max_open < 1:
            raise ValueError(f"need max_open >= 1, got {max_open}")
        self.max_open = max_open
        self._lock = threading.Lock()
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    def acquire(self) -> None:
        """Count one more open stream, or raise TooManyStreams; pair every success with `release()`."""
        with self._lock:
            if self._open >= self.max_open:
                raise TooManyStreams(self.max_open)
            self._open += 1

    def release(self) -> None:
        with self._lock:
            self._open -= 1
