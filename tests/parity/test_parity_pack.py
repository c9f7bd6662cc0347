"""Every case of the golden parity pack, and of the generated side-by-side pack in this folder, run
through the same harness as `inspatio parity`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspatio_world.parity.case import ParityCase
from inspatio_world.parity.harness import run_case, run_pack

from ..conftest import find_parity_pack

GENERATED_PACK = Path(__file__).parent / "generated"  # tools/parity_cases/make_wan_vae_cases.py


def _cases() -> list:
    pack = find_parity_pack()
    if pack is None:
        return [pytest.param(None, id="parity-pack-missing")]
    return [pytest.param(case, id=case.name) for case in ParityCase.discover(pack)]


@pytest.mark.parametrize("case", _cases())
def test_case_passes(case, parity_pack):
    result = run_case(case, torch.device("cpu"))
    assert result.passed, result.line()


@pytest.mark.parametrize("name", [case.name for case in ParityCase.discover(GENERATED_PACK)])
def test_generated_case_passes(name):
    lines: list[str] = []
    run_pack(GENERATED_PACK, torch.device("cpu"), only=[name], emit=lines.append)
    assert lines[-1] == "1 passed, 0 failed", "\n".join(lines)


V15_PACK = Path(__file__).parent / "v1_5"  # tools/parity_cases/make_v15_cases.py


@pytest.mark.parametrize("name", [case.name for case in ParityCase.discover(V15_PACK)])
def test_v15_case_passes(name):
    lines: list[str] = []
    run_pack(V15_PACK, torch.device("cpu"), only=[name], emit=lines.append)
    assert lines[-1] == "1 passed, 0 failed", "\n".join(lines)
