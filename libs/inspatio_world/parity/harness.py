"""Run every case of a parity pack and report `PASS <case> <max error>` / `FAIL <case> <reason>`."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .case import ParityCase
from .compare import compare, output_tolerance
from .runners import find_runner


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    max_error: float = 0.0
    reason: str = ""

    def line(self) -> str:
        return f"PASS {self.name} {self.max_error:.3g}" if self.passed else f"FAIL {self.name} {self.reason}"


def run_case(case: ParityCase, device: torch.device) -> CaseResult:
    try:
        run = find_runner(case)
        if run is None:
            return CaseResult(case.name, False, reason=f"no runner for upstream {case.upstream!r}")
        with torch.no_grad():
            produced = run(case, device)
        worst = 0.0
        for key, want in case.outputs.items():
            if key not in produced:
                return CaseResult(case.name, False, reason=f"output {key!r} not produced")
            tol = output_tolerance(case.meta.get("tolerance", {}), key, want.dtype)
            err, mismatch = compare(key, produced[key], want, tol)
            if mismatch is not None:
                return CaseResult(case.name, False, err, f"{mismatch.key}: {mismatch.reason}")
            worst = max(worst, err)
        return CaseResult(case.name, True, worst)
    except Exception as exc:  # a broken case is a failure with its reason, never a crash of the whole run
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return CaseResult(case.name, False, reason=f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})")


def run_pack(pack: Path, device: torch.device, only: list[str] | None = None, emit: Callable[[str], None] = print) -> list[CaseResult]:
    cases = ParityCase.discover(pack)
    if only:
        cases = [c for c in cases if c.name in only or c.path.name in only]
    results = []
    for case in cases:
        result = run_case(case, device)
        emit(result.line())
        results.append(result)
    passed = sum(r.passed for r in results)
    emit(f"{passed} passed, {len(results) - passed} failed")
    return results
