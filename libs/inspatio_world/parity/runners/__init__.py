"""Registry of parity runners, keyed by the upstream code a case exercises (`case.json` "upstream").

A runner takes a case and a device and returns the tensors it computed under the case's output
names; the harness compares them. Runners load weights through the real loading code.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

import torch

from ..case import ParityCase

Runner = Callable[[ParityCase, torch.device], dict[str, torch.Tensor]]

_RUNNERS: dict[str, Runner] = {}


def runner(upstream_prefix: str) -> Callable[[Runner], Runner]:
    """Register `fn` for cases whose "upstream" field starts with `upstream_prefix`."""

    def register(fn: Runner) -> Runner:
        _RUNNERS[upstream_prefix] = fn
        return fn

    return register


def find_runner(case: ParityCase) -> Runner | None:
    """The runner registered for the case's upstream code; a runner module that fails to import
    only fails the cases it would have run (its error is raised when nothing else matches)."""
    broken: list[str] = []
    for module in pkgutil.iter_modules(__path__):
        try:
            importlib.import_module(f"{__name__}.{module.name}")
        except Exception as exc:
            broken.append(f"runners.{module.name}: {type(exc).__name__}: {exc}")
    matches = [prefix for prefix in _RUNNERS if case.upstream.startswith(prefix)]
    if matches:
        return _RUNNERS[max(matches, key=len)]
    if broken:
        raise ImportError("no runner matched and some runner modules failed to import: " + "; ".join(broken))
    return None
