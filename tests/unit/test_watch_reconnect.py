"""What a job watch keeps across reconnections: when to try again, and which events to let through."""

from __future__ import annotations

import time

import grpc

from inspatio_world.client import JobEvent
from inspatio_world.client.reconnect import MAX_BACKOFF_S, ReconnectBudget, SeenEvents, probe_failure


class Status(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code


def test_unavailable_is_retried_with_capped_backoff_other_statuses_are_not():
    budget = ReconnectBudget(timeout=None, reconnect_s=600, backoff_s=0.5)
    delays = [budget.next_delay(Status(grpc.StatusCode.UNAVAILABLE)) for _ in range(8)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0] and set(delays[4:]) == {MAX_BACKOFF_S}
    assert budget.next_delay(None) == MAX_BACKOFF_S  # a stream that ended before its job: reopened too
    for code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert budget.next_delay(Status(code)) is None
    budget.heard_from_server()  # a reconnection that worked starts the backoff again
    assert budget.next_delay(Status(grpc.StatusCode.UNAVAILABLE)) == 0.5


def test_the_callers_timeout_bounds_the_whole_watch():
    budget = ReconnectBudget(timeout=0.3, reconnect_s=600, backoff_s=10)
    assert 0 < budget.stream_timeout() <= 0.3
    assert budget.next_delay(Status(grpc.StatusCode.UNAVAILABLE)) <= 0.3  # never sleeps past the deadline
    time.sleep(0.35)
    assert budget.next_delay(Status(grpc.StatusCode.UNAVAILABLE)) is None and budget.stream_timeout() == 0


def test_without_a_timeout_reconnecting_stops_reconnect_s_into_an_outage():
    budget = ReconnectBudget(timeout=None, reconnect_s=0.2, backoff_s=0.01)
    assert budget.stream_timeout() is None
    time.sleep(0.25)  # a quiet stream for longer than reconnect_s: the outage starts when it breaks
    assert budget.next_delay(Status(grpc.StatusCode.UNAVAILABLE)) == 0.01
    time.sleep(0.25)
    assert budget.next_delay(Status(grpc.StatusCode.UNAVAILABLE)) is None
    budget.heard_from_server()  # the coordinator answered: a later outage gets the whole window again
    assert budget.next_delay(Status(grpc.StatusCode.UNAVAILABLE)) == 0.01


def test_a_slow_probe_is_one_more_failure_a_missing_job_ends_the_watch():
    assert probe_failure(Status(grpc.StatusCode.DEADLINE_EXCEEDED)) is None
    gone = Status(grpc.StatusCode.NOT_FOUND)
    assert probe_failure(gone) is gone
    assert ReconnectBudget(timeout=None, reconnect_s=600, backoff_s=0.5).next_delay(gone) is None


def test_a_block_index_passes_once_stage_events_always():
    seen = SeenEvents()
    stream = ["stage_started", 0, 1, "stage_started", 0, 1, 2, "finished"]  # a replay after a takeover
    events = [JobEvent(e, "j", stage="caption") if isinstance(e, str) else JobEvent("block", "j", block_index=e) for e in stream]
    admitted = [e.kind if e.kind != "block" else e.block_index for e in events if seen.admit(e)]
    assert admitted == ["stage_started", 0, 1, "stage_started", 2, "finished"]
