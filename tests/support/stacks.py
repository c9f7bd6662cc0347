"""The local stack as the tests start it: its services stopped together at the end."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from inspatio_world.stack import LocalStack


@contextmanager
def local_stack(*args, **kwargs) -> Iterator[LocalStack]:
    """`with LocalStack(*args, **kwargs)`, except that at the end every service gets its SIGTERM at
    once: each drains and exits on its own (seconds, mostly the interpreter's exit), so a teardown
    lasts the slowest exit, not the sum of four. LocalStack.stop then reaps them (killing any that
    hang). Not for a supervised stack: its supervisor would restart what exits."""
    with LocalStack(*args, **kwargs) as stack:
        assert stack.supervisor is None, "a supervised stack stops through LocalStack.stop alone"
        try:
            yield stack
        finally:
            for process in stack.processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
