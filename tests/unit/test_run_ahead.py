"""run_ahead.ahead: the producer runs one item ahead in its own thread; order, errors and early exits."""

from __future__ import annotations

import threading

import pytest

from inspatio_world.run_ahead import ahead


def test_items_come_out_in_order():
    with ahead(iter(range(50))) as items:
        assert list(items) == list(range(50))


def test_the_next_item_is_made_while_the_consumer_holds_this_one():
    second_made = threading.Event()

    def produce():
        yield 1
        second_made.set()
        yield 2

    with ahead(produce()) as items:
        assert next(items) == 1
        # Without a producer thread the second item would only be made on the next `next`.
        assert second_made.wait(timeout=10)
        assert list(items) == [2]


def test_an_error_comes_out_where_its_item_would_have():
    def produce():
        yield "a"
        raise ValueError("broken block")

    with ahead(produce()) as items:
        assert next(items) == "a"
        with pytest.raises(ValueError, match="broken block"):
            next(items)


def test_leaving_early_stops_and_closes_the_producer():
    closed = threading.Event()
    produced = []

    def produce():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    with ahead(produce(), name="early") as items:
        assert next(items) == 0
    assert closed.is_set()  # joined and closed before the `with` returned
    assert len(produced) <= 3  # at most one item waiting and one in hand beyond the consumed one
    assert not any(t.name == "early" for t in threading.enumerate())


def test_an_error_in_the_consumer_stops_the_producer():
    closed = threading.Event()

    def produce():
        try:
            while True:
                yield 1
        finally:
            closed.set()

    with pytest.raises(RuntimeError, match="publish failed"):
        with ahead(produce()) as items:
            next(items)
            raise RuntimeError("publish failed")
    assert closed.is_set()
