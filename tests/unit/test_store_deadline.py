"""Store retries keep to the caller's deadline (store/deadline.py): against an S3 endpoint that refuses
connections (a real closed port), retries stop when the next wait would pass the deadline, and no
attempt starts after it."""

from __future__ import annotations

import socket
import time

import pytest

from inspatio_world.refusals import BudgetExceeded
from inspatio_world.store.base import StoreError
from inspatio_world.store.deadline import store_deadline, time_left
from inspatio_world.store.s3 import S3Store


@pytest.fixture
def refusing_store() -> S3Store:
    with socket.socket() as probe:  # a port nobody listens on: every attempt fails at once, transiently
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return S3Store(f"127.0.0.1:{port}", "key", "secret", "bucket", retries=8, backoff_s=0.5, timeout_s=2.0)


def test_retries_stop_at_the_deadline(refusing_store):
    started = time.monotonic()
    with store_deadline(1.0), pytest.raises(StoreError, match="failed after"):
        refusing_store.get_bytes("a/b")
    assert time.monotonic() - started < 1.5  # without the deadline: 8 retries, about 30 s of waiting


def test_no_attempt_starts_after_the_deadline(refusing_store):
    with store_deadline(0.0), pytest.raises(BudgetExceeded, match="not attempted: the caller's deadline has passed"):
        refusing_store.get_bytes("a/b")


def test_the_deadline_ends_with_its_block():
    with store_deadline(5.0):
        assert 4.0 < time_left() <= 5.0
    assert time_left() is None
