"""Every case of the golden parity pack, run through the same harness as `inspatio parity`."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.parity.case import ParityCase
from inspatio_world.parity.harness import run_case

from ..conftest import find_parity_pack

# Conditioning cases belong to the conditioning-core work; strict xfail turns red once they pass,
# so this list can only shrink.
PENDING_UPSTREAM = (
    "depth/depth_predict_da3.py",
    "datasets/utils.py",
    "scripts/render_point_cloud.py",
)


def _cases() -> list:
    pack = find_parity_pack()
    if pack is None:
        return [pytest.param(None, id="parity-pack-missing")]
    params = []
    for case in ParityCase.discover(pack):
        marks = [pytest.mark.xfail(strict=True, reason="conditioning core not built yet")] if case.upstream.startswith(PENDING_UPSTREAM) else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.mark.parametrize("case", _cases())
def test_case_passes(case, parity_pack):
    result = run_case(case, torch.device("cpu"))
    assert result.passed, result.line()
