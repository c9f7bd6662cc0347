"""How a case's tolerance block covers each output, and the element-wise comparison."""

from __future__ import annotations

import torch

from inspatio_world.parity.compare import EXACT, Tolerance, compare, output_tolerance, tolerance_for

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


def test_float32_exact_rules_allow_only_rounding_noise_of_the_outputs_scale():
    want = torch.tensor([2.0, 0.5, 1e-3], dtype=torch.float32)
    noise = 4 * torch.finfo(torch.float32).eps * 2.0  # the floor: 4 eps x the largest magnitude
    assert compare("t", want + torch.tensor([noise, 0, 0]), want, EXACT)[1] is None
    assert compare("t", want + torch.tensor([0, 0, 2 * noise]), want, EXACT)[1] is not None


def test_bf16_exact_rules_get_no_floor():
    want = torch.tensor([1.0], dtype=torch.bfloat16)
    assert compare("t", torch.tensor([1.0078125], dtype=torch.bfloat16), want, EXACT)[1] is not None


def test_integer_outputs_exact_except_8bit_pictures_of_a_tolerant_float_output():
    spec = {"render": {"atol": 1e-4}, "mask": {"exact": True}}
    assert output_tolerance(spec, "render_uint8", torch.uint8) == Tolerance(1.0, 0.0)
    assert output_tolerance(spec, "mask_uint8", torch.uint8) == EXACT
    assert output_tolerance(spec, "source_frame_index", torch.int64) == EXACT
    assert output_tolerance(spec, "render", torch.float32) == Tolerance(1e-4, 0.0)
