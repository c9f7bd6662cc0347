"""Run an iterator one item ahead of its consumer, in a thread of its own.

The generator's block loop is GPU work and the code that publishes each block (encode, upload) is
CPU work: run in one thread, the GPU waits while a block is published. `ahead(items)` computes the
next item while the consumer handles the current one; items come out in order, an exception raised
by the iterator comes out where its item would have, and leaving the `with` early (an error, a
cancelled call) stops the producer at its next item and closes the iterator in its own thread.
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from typing import Iterator, TypeVar

T = TypeVar("T")

_END = object()
_POLL_S = 0.1  # how often a blocked producer looks whether the consumer went away


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


@contextmanager
def ahead(items: Iterator[T], depth: int = 1, name: str = "ahead") -> Iterator[Iterator[T]]:
    """`with ahead(it) as items: for item in items: ...`: `it` runs in a thread, at most `depth`
    items ahead of the consumer. On leaving, the producer is stopped and joined."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    consumer_gone = threading.Event()

    def offer(item) -> bool:
        while not consumer_gone.is_set():
            try:
                handoff.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failed(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def consume() -> Iterator[T]:
        while True:
            item = handoff.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    producer = threading.Thread(target=produce, name=name, daemon=True)
    producer.start()
    try:
        yield consume()
    finally:
        consumer_gone.set()
        producer.join()
