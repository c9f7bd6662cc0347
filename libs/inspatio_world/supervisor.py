"""Keeping the local stack's services alive: a child that dies is started again, with capped backoff.

Every death is reported (service, exit status or signal, its last log message, when the next attempt
comes); a service that keeps dying soon after its start is given up on, loudly, and the supervisor's
`failure` says why, so `inspatio up` can stop instead of serving a stack with a hole in it. A
restarted service counts as back only when it answers health checks from its own socket
(`LocalStack.serving`). Services stopped on purpose (`LocalStack.stop_service`) are left alone.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .stack import LocalStack


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    quick_s: float = 60.0  # a child that dies sooner than this after its start failed "quickly"
    max_quick_failures: int = 5  # quick failures in a row before giving up

    def delay(self, failures: int) -> float:
        return min(self.first_delay_s * 2 ** max(failures - 1, 0), self.max_delay_s)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


@dataclass
class _Child:
    failures: int = 0  # quick failures in a row
    retry_at: float | None = None  # dead, to be started again at this time.monotonic()
    starting: bool = False  # started again, not yet serving


class Supervisor:
    def __init__(self, stack: "LocalStack", policy: RestartPolicy, report: Callable[[str], None],
                 poll_s: float = 0.5) -> None:  # fmt: skip
        self.stack, self.policy, self.report, self.poll_s = stack, policy, report, poll_s
        self.failure: str | None = None
        self.gave_up = threading.Event()
        self._children = {name: _Child() for name in stack.processes}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-supervisor", daemon=True)

    def start(self) -> "Supervisor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.poll_s):
            for name, child in self._children.items():
                with self.stack.lock:  # no race with stop_service / restart_service
                    if self._stopping.is_set():
                        return
                    if not self._step(name, child):
                        return

    def _step(self, name: str, child: _Child) -> bool:
        """One look at one service; False once the supervisor gave up."""
        if name in self.stack.held:
            self._children[name] = _Child()
            return True
        process = self.stack.processes[name]
        now = time.monotonic()
        if process.poll() is None:
            if child.starting and self.stack.serving(name):
                child.starting = False
                self.report(f"supervisor: the {name} service is back (pid {process.pid})")
            elif not child.starting and now - self.stack.started_at[name] > self.policy.quick_s:
                child.failures = 0  # it has run long enough: earlier deaths no longer count
            return True
        if child.retry_at is None:
            ran = now - self.stack.started_at[name]
            child.failures = child.failures + 1 if ran < self.policy.quick_s else 1
            exit_, last = describe_exit(process.returncode), self.stack.last_log_line(name)
            if child.failures > self.policy.max_quick_failures:
                self.failure = (f"the {name} service died {child.failures} times in a row within {self.policy.quick_s:g} s of "
                                f"starting ({exit_}){last}; giving up")  # fmt: skip
                self.report(f"supervisor: {self.failure}")
                self.gave_up.set()
                return False
            delay = self.policy.delay(child.failures)
            self.report(f"supervisor: the {name} service stopped ({exit_}) after {ran:.0f} s{last}; "
                        f"restarting it in {delay:g} s (attempt {child.failures} of {self.policy.max_quick_failures})")  # fmt: skip
            child.retry_at, child.starting = now + delay, False
        elif now >= child.retry_at:
            self.stack.spawn(name)
            child.retry_at, child.starting = None, True
        return True
