"""Upstream v1.5's image-scene render (per-view splat, nearer-wins fusion, select_chunk_top3, source
stream), reproduced exactly: every case of tests/parity/v15_images through the parity harness."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspatio_world.parity.case import ParityCase
from inspatio_world.parity.harness import run_pack

PACK = Path(__file__).parent / "v15_images"  # tools/parity_cases/make_v15_image_cases.py
CASES = [case.name for case in ParityCase.discover(PACK)]


def test_pack_has_its_four_cases():
    assert CASES == ["v15_four_view_render", "v15_one_view_render", "v15_project_source", "v15_select_chunk_top3"]


@pytest.mark.parametrize("name", CASES)
def test_case_matches_upstream(name):
    lines: list[str] = []
    run_pack(PACK, torch.device("cpu"), only=[name], emit=lines.append)
    assert lines[-1] == "1 passed, 0 failed", "\n".join(lines)


def test_four_view_case_exercises_the_selection():
    """The fixture is only worth having if the choice varies: distinct views per block, not all equal."""
    outputs = ParityCase(PACK / "v15_four_view_render").outputs
    chosen = outputs["source_indices"].view(-1, 3)
    assert all(len(set(block.tolist())) == 3 for block in chosen)
    assert len(set(outputs["source_indices"].tolist())) == 4
    mask = outputs["mask_uint8"]
    assert 0 < (mask == 255).float().mean() < 1  # holes and rendered pixels both present
