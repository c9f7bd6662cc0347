"""A stand-in stage client whose every stage blocks until the test releases it, then fails: a job
accepted by the coordinator stays running for as long as the test needs, and then ends on its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator


class BlockedStages:
    """Every stage waits until `release` is set (or `release_after_s` has passed), then fails."""

    def __init__(self, release_after_s: float) -> None:
        self.release = threading.Event()
        self.release_after_s = release_after_s

    def _wait(self, *_args, **_kwargs):
        self.release.wait(self.release_after_s)
        raise RuntimeError("the test released the stages")

    caption = depth = render = _wait

    def generate(self, *_args, **_kwargs) -> Iterator:
        yield self._wait()
