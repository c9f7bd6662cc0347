"""Tolerance rules of a parity case and the element-wise comparison.

A case's `tolerance` is either {"atol", "rtol"} for every output, or a dict keyed by output name
(the full key, its first or last `/` component) whose values are such dicts, "exact", or
{"exact": true}. Integer and boolean outputs are always compared exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float

    @property
    def exact(self) -> bool:
        return self.atol == 0 and self.rtol == 0


EXACT = Tolerance(0.0, 0.0)


def _parse(rule) -> Tolerance | None:
    if rule == "exact":
        return EXACT
    if isinstance(rule, dict):
        if rule.get("exact") is True:
            return EXACT
        if "atol" in rule or "rtol" in rule:
            return Tolerance(float(rule.get("atol", 0.0)), float(rule.get("rtol", 0.0)))
    return None


def tolerance_for(spec: dict, key: str) -> Tolerance:
    parts = key.split("/")
    for candidate in (key, parts[-1], parts[0]):
        if candidate in spec:
            rule = _parse(spec[candidate])
            if rule is not None:
                return rule
    rule = _parse(spec)
    if rule is None:
        raise ValueError(f"no tolerance for output {key!r} in {spec!r}")
    return rule


@dataclass(frozen=True)
class Mismatch:
    key: str
    reason: str


def compare(key: str, got: torch.Tensor, want: torch.Tensor, tol: Tolerance) -> tuple[float, Mismatch | None]:
    """(max abs error, mismatch or None)."""
    if tuple(got.shape) != tuple(want.shape):
        return float("inf"), Mismatch(key, f"shape {tuple(got.shape)} != expected {tuple(want.shape)}")
    if not want.is_floating_point():
        tol = EXACT
    got64 = got.detach().cpu().to(torch.float64)
    want64 = want.to(torch.float64)
    if not torch.isfinite(got64).all():
        return float("inf"), Mismatch(key, "non-finite values")
    err = (got64 - want64).abs()
    max_err = float(err.max()) if err.numel() else 0.0
    bad = err > tol.atol + tol.rtol * want64.abs()
    if bad.any():
        return max_err, Mismatch(key, f"max abs error {max_err:.3g} beyond atol={tol.atol:g} rtol={tol.rtol:g} at {int(bad.sum())}/{bad.numel()} elements")
    return max_err, None
