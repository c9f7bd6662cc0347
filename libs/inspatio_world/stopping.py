"""Stopping work early: a stage checks between its batches, chunks and blocks whether it should go on.

A `StopCheck` is a function of no arguments that returns when the work may go on and raises when it
must stop: `WorkStopped` when the caller went away (a cancelled job or RPC), `refusals.BudgetExceeded`
when the work ran past its time. Stages and models only call it; who decides (a gRPC call's context,
a job's cancel event and budget) builds it, so no model code knows about gRPC or jobs.
"""

from __future__ import annotations

from typing import Callable

StopCheck = Callable[[], None]


class WorkStopped(Exception):
    """The caller of this work no longer wants it (rpc/errors.py: CANCELLED)."""


def go_on() -> None:
    """The StopCheck of work nobody stops."""
