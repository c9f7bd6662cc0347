"""Tolerance rules of a parity case and the element-wise comparison.

A case's `tolerance` is either {"atol", "rtol"} for every output, or a dict of named rules whose
values are such dicts, "exact", or {"exact": true}; `tolerance_for` says how a name covers an
output. Integer and boolean outputs are always compared exactly (by the harness).
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
    """The rule for output `key`: a rule named by the key (whole, last or first `/` part), else the
    longest rule name contained in the last part (`interp` covers `interp_pitch`), else a single
    global rule, else the strictest rule of the case (never looser than anything it states)."""
    parts = key.split("/")
    for candidate in (key, parts[-1], parts[0]):
        rule = _parse(spec.get(candidate))
        if rule is not None:
            return rule
    named = {name: _parse(value) for name, value in spec.items()}
    named = {name: rule for name, rule in named.items() if rule is not None}
    contained = sorted((name for name in named if name in parts[-1]), key=len, reverse=True)
    if contained:
        return named[contained[0]]
    rule = _parse(spec)
    if rule is not None:
        return rule
    if not named:
        raise ValueError(f"no tolerance for output {key!r} in {spec!r}")
    return Tolerance(min(r.atol for r in named.values()), min(r.rtol for r in named.values()))


def output_tolerance(spec: dict, key: str, dtype: torch.dtype) -> Tolerance:
    """Floats follow the case's rules. Integers (indices) are exact, except 8-bit pictures of a float
    output that has a tolerance (`render_uint8` of `render`): truncating a value that is within that
    tolerance of a level's edge moves it by one level."""
    if dtype.is_floating_point:
        return tolerance_for(spec, key)
    if dtype == torch.uint8 and not tolerance_for(spec, key).exact:
        return Tolerance(1.0, 0.0)
    return EXACT


@dataclass(frozen=True)
class Mismatch:
    key: str
    reason: str


FLOAT_NOISE_EPS = 4  # a float32/float64 output is never held tighter than 4 eps x its largest magnitude


def _rounding_floor(want: torch.Tensor) -> float:
    """The smallest bound a float32/float64 output is held to (0 for other dtypes).

    The pack was made on another CPU: its exp and its LAPACK/reduction kernels round differently from
    this machine's (AVX-512, MKL) by a few eps of the output's scale, which no implementation choice
    here can remove. A rule stricter than that ("exact", or an atol below float32 resolution) means
    "within that rounding noise". bf16/fp16 outputs get no floor: their eps is coarse.
    """
    if want.dtype not in (torch.float32, torch.float64) or want.numel() == 0:
        return 0.0
    return FLOAT_NOISE_EPS * torch.finfo(want.dtype).eps * float(want.abs().max())


def compare(key: str, got: torch.Tensor, want: torch.Tensor, tol: Tolerance) -> tuple[float, Mismatch | None]:
    """(max abs error, mismatch or None)."""
    if tuple(got.shape) != tuple(want.shape):
        return float("inf"), Mismatch(key, f"shape {tuple(got.shape)} != expected {tuple(want.shape)}")
    got64 = got.detach().cpu().to(torch.float64)
    want64 = want.to(torch.float64)
    if not torch.isfinite(got64).all():
        return float("inf"), Mismatch(key, "non-finite values")
    err = (got64 - want64).abs()
    max_err = float(err.max()) if err.numel() else 0.0
    bad = err > (tol.atol + tol.rtol * want64.abs()).clamp_min(_rounding_floor(want))
    if bad.any():
        return max_err, Mismatch(key, f"max abs error {max_err:.3g} beyond atol={tol.atol:g} rtol={tol.rtol:g} at {int(bad.sum())}/{bad.numel()} elements")
    return max_err, None
