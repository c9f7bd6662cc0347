"""The deadline of the work a store call serves, so that store retries never outlast their caller.

A service sets it around each RPC from the call's remaining time (rpc/interceptors.py); S3Store stops
retrying once the next attempt would start past it, and refuses to start one after it. A context
variable: it follows the RPC's own thread, never a job's worker threads.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

_deadline: ContextVar[float | None] = ContextVar("inspatio_store_deadline", default=None)


@contextmanager
def store_deadline(seconds: float | None) -> Iterator[None]:
    """Store calls inside may use at most `seconds` from now (None: no deadline)."""
    token = _deadline.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left() -> float | None:
    """Seconds until the deadline (negative once past), or None without one."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()
