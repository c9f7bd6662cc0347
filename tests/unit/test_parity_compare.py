"""How a case's tolerance block covers each output, and the element-wise comparison."""

from __future__ import annotations

import torch

from inspatio_world.parity.compare import EXACT, Tolerance, compare, tolerance_for

SPEC = {"interp": {"atol": 1e-9}, "target_c2w": {"atol": 1e-5}, "mask": {"exact": True, "note": "..."}}


def test_rule_named_by_the_key_or_its_parts():
    assert tolerance_for(SPEC, "run/N17/target_c2w") == Tolerance(1e-5, 0)
    assert tolerance_for(SPEC, "mask") == EXACT


def test_rule_contained_in_the_last_part():
    assert tolerance_for(SPEC, "custom/N17/interp_pitch") == Tolerance(1e-9, 0)


def test_unnamed_output_gets_the_strictest_rule():
    assert tolerance_for(SPEC, "custom/N17/source_c2w") == EXACT
    assert tolerance_for({"a": {"atol": 1e-3, "rtol": 1e-2}, "b": {"atol": 1e-4, "rtol": 0.1}}, "c") == Tolerance(1e-4, 1e-2)


def test_single_global_rule():
    assert tolerance_for({"atol": 0.1, "rtol": 0.05}, "anything") == Tolerance(0.1, 0.05)


def test_compare_reports_shape_and_tolerance_failures():
    want = torch.tensor([1.0, 2.0])
    assert compare("x", want + 1e-6, want, Tolerance(1e-5, 0))[1] is None
    assert "beyond atol" in compare("x", want + 1e-3, want, Tolerance(1e-5, 0))[1].reason
    assert "shape" in compare("x", want[:1], want, EXACT)[1].reason
    assert "non-finite" in compare("x", torch.tensor([1.0, float("nan")]), want, EXACT)[1].reason
