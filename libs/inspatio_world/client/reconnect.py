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
PROBE_TIMEOUT_S = 10.0  # the GetJob made before reopening a watch


class ReconnectBudget:
    """Capped exponential backoff between reopenings, within the caller's deadline (`timeout`, for
    the whole watch) if any, else within `reconnect_s` of the start of the outage: the first failure
    since the coordinator was last heard from (an event, or an answer to the probe made before each
    reopening, which also checks that the job still exists)."""

    def __init__(self, timeout: float | None, reconnect_s: float, backoff_s: float) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.reconnect_s, self.backoff_s = reconnect_s, backoff_s
        self.outage_since: float | None = None
        self.attempt = 0

    def stream_timeout(self) -> float | None:
        """The deadline for the next call: what is left of the caller's timeout."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def probe_timeout(self) -> float:
        left = self.stream_timeout()
        return PROBE_TIMEOUT_S if left is None else min(PROBE_TIMEOUT_S, left)

    def heard_from_server(self) -> None:
        self.outage_since = None
        self.attempt = 0

    def next_delay(self, error: grpc.RpcError | None) -> float | None:
        """Seconds to wait before trying again after `error` (None: the stream ended without the
        job's end, e.g. a draining coordinator), or None to give up: a status other than UNAVAILABLE
        (NOT_FOUND: the job is gone), or out of time."""
        if error is not None and error.code() != grpc.StatusCode.UNAVAILABLE:
            return None
        now = time.monotonic()
        if self.outage_since is None:
            self.outage_since = now
        until = self.deadline if self.deadline is not None else self.outage_since + self.reconnect_s
        if now >= until:
            return None
        delay = min(self.backoff_s * 2**self.attempt, MAX_BACKOFF_S, until - now)
        self.attempt += 1
        return delay


def probe_failure(error: grpc.RpcError) -> grpc.RpcError | None:
    """What a failed probe counts as: a slow answer (a coordinator whose store is down) is one more
    failure within the budget, not the end of the watch; other statuses count as they are."""
    return None if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED else error


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
