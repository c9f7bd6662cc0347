"""What every benchmark measures the same way: a GPU call's wall time and an output's distance."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """fn's result and its wall seconds, the GPU synchronized before and after."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return result, time.perf_counter() - start


def relative_l2(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference||, in float32."""
    value, reference = value.float(), reference.float()
    return float((value - reference).norm() / reference.norm())
