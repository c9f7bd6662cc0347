"""Every case of the golden parity pack, run through the same harness as `inspatio parity`."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.parity.case import ParityCase
from inspatio_world.parity.harness import run_case

from ..conftest import find_parity_pack


def _cases() -> list:
    pack = find_parity_pack()
    if pack is None:
        return [pytest.param(None, id="parity-pack-missing")]
    return [pytest.param(case, id=case.name) for case in ParityCase.discover(pack)]


@pytest.mark.parametrize("case", _cases())
def test_case_passes(case, parity_pack):
    result = run_case(case, torch.device("cpu"))
    assert result.passed, result.line()
