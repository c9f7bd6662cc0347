"""Time budgets of stage calls: a base plus seconds per unit of work, known before the call.

caption and depth are budgeted per input frame used (the job's admission probed the video), render
per rendered frame (camera), generate per block (both from the frame plan, jobs/admission.py). A call
past its budget fails its job with an error starting DEADLINE_EXCEEDED that names the stage and the
budget; the stage service stops at its next check (stopping.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from .. import envvars
from ..refusals import BudgetExceeded
from ..stopping import WorkStopped

UNITS = {"caption": "input frames", "depth": "input frames", "render": "rendered frames", "generate": "blocks"}


@dataclass(frozen=True)
class StageBudgets:
    """Seconds a stage call may take: `base_s` + its rate x its units of work."""

    base_s: float = 300.0
    caption_per_frame_s: float = 0.2
    depth_per_frame_s: float = 3.0
    render_per_frame_s: float = 1.0
    generate_per_block_s: float = 60.0

    @classmethod
    def from_env(cls) -> "StageBudgets":
        seconds = envvars.get_positive_float
        return cls(seconds(envvars.STAGE_BUDGET_BASE_SECONDS), seconds(envvars.CAPTION_SECONDS_PER_FRAME),
                   seconds(envvars.DEPTH_SECONDS_PER_FRAME), seconds(envvars.RENDER_SECONDS_PER_FRAME),
                   seconds(envvars.GENERATE_SECONDS_PER_BLOCK))  # fmt: skip

    def seconds(self, stage: str, units: int) -> float:
        rate = {"caption": self.caption_per_frame_s, "depth": self.depth_per_frame_s,
                "render": self.render_per_frame_s, "generate": self.generate_per_block_s}[stage]  # fmt: skip
        return self.base_s + rate * max(units, 0)

    def call(self, stage: str, units: int, cancel: threading.Event) -> "StageCall":
        """The budget of one call, counted from now."""
        budget = self.seconds(stage, units)
        return StageCall(stage, budget, f"{units} {UNITS[stage]}", time.monotonic() + budget, cancel)

    def joint(self, units: dict[str, int], cancel: threading.Event) -> "StageCall":
        """One budget for stages done in one call (render inside generate): the sum of theirs, one base."""
        budget = self.base_s + sum(self.seconds(stage, n) - self.base_s for stage, n in units.items())
        work = " and ".join(f"{n} {UNITS[stage]}" for stage, n in units.items())
        return StageCall("+".join(units), budget, work, time.monotonic() + budget, cancel)


@dataclass(frozen=True)
class StageCall:
    """What one stage call may use: time until `deadline` (time.monotonic) and the job's cancel event."""

    stage: str
    budget_s: float
    work: str  # what the budget was made for, e.g. "9 input frames"
    deadline: float
    cancel: threading.Event

    def from_now(self) -> "StageCall":
        """The same budget counted from now (e.g. once a remote stage has a ready replica)."""
        return replace(self, deadline=time.monotonic() + self.budget_s)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def exceeded(self) -> BudgetExceeded:
        return BudgetExceeded(f"DEADLINE_EXCEEDED: the {self.stage} stage ran past its time budget of {self.budget_s:g} s "
                              f"(for {self.work}; README \"Time budgets\" names the settings)")  # fmt: skip

    def check(self) -> None:
        """The StopCheck of in-process work: stop when the job is cancelled or the budget is spent."""
        if self.cancel.is_set():
            raise WorkStopped(f"{self.stage}: the job was cancelled")
        if self.remaining() <= 0:
            raise self.exceeded()

