"""What a job watch keeps across reconnections, shared by the sync and async clients.

A watch stream can drop while its job goes on: the coordinator restarts, drains, or another
coordinator takes the job over. The client then opens the watch again; `ReconnectBudget` says
whether and when, and `SeenEvents` keeps the caller from seeing a block twice (a coordinator that
takes a job over re-runs it, finished stages as cache hits, and replays the job's events).
"""

from __future__ import annotations

import time

import grpc

DEFAULT_RECONNECT_S = 600.0  # how long a watch without a deadline keeps trying to reconnect
MAX_BACKOFF_S = 5.0


class ReconnectBudget:
    """Capped exponential backoff between reopenings, within the caller's deadline (`timeout`, for
    the whole watch) if any, else within `reconnect_s` of the last sign of life from the coordinator."""

    def __init__(self, timeout: float | None, reconnect_s: float, backoff_s: float) -> None:
        now = time.monotonic()
        self.deadline = None if timeout is None else now + timeout
        self.reconnect_s, self.backoff_s = reconnect_s, backoff_s
        self.last_contact = now
        self.attempt = 0

    def stream_timeout(self) -> float | None:
        """The deadline for the next stream: what is left of the caller's timeout."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def heard_from_server(self) -> None:
        self.last_contact = time.monotonic()
        self.attempt = 0

    def next_delay(self, error: grpc.RpcError | None) -> float | None:
        """Seconds to wait before reopening after `error` (None: the stream ended without the job's
        end, e.g. a draining coordinator), or None to give up: not UNAVAILABLE, or out of time."""
        if error is not None and error.code() != grpc.StatusCode.UNAVAILABLE:
            return None
        now = time.monotonic()
        until = self.deadline if self.deadline is not None else self.last_contact + self.reconnect_s
        if now >= until:
            return None
        delay = min(self.backoff_s * 2**self.attempt, MAX_BACKOFF_S, until - now)
        self.attempt += 1
        return delay


class SeenEvents:
    """Lets through each block index once, in increasing order; every other event passes (a stage
    event repeats only when the job really ran that stage again)."""

    def __init__(self) -> None:
        self.last_block = -1

    def admit(self, event) -> bool:
        if event.kind != "block":
            return True
        if event.block_index <= self.last_block:
            return False
        self.last_block = event.block_index
        return True
