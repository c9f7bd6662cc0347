"""The StopCheck of the work a gRPC call does (stopping.py): stop once the caller cancelled or
the call's deadline passed, so a stage service never computes for a caller that has gone.

The call's remaining time is what the caller gave (the coordinator sends each stage call's budget
as its deadline), so a stage's checks between batches, chunks and blocks keep to the caller's budget.
"""

from __future__ import annotations

import grpc

from ..refusals import BudgetExceeded
from ..stopping import StopCheck, WorkStopped
from .interceptors import NO_DEADLINE_SECONDS


def call_stop_check(context: grpc.ServicerContext, what: str) -> StopCheck:
    """`what` names the work in the error (e.g. "depth")."""
    remaining = context.time_remaining()
    given = f"{remaining:.1f} s" if remaining is not None and remaining < NO_DEADLINE_SECONDS else "no deadline"

    def check() -> None:
        left = context.time_remaining()
        if left is not None and left <= 0:
            raise BudgetExceeded(f"{what}: the caller's deadline passed (it gave the call {given})")
        if not context.is_active():
            raise WorkStopped(f"{what}: the caller cancelled the call")

    return check
