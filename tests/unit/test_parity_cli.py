"""The `inspatio parity` contract: one line per case, an exact summary line, non-zero exit on any failure."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from inspatio_world.cli import main


def _copy_case(pack, dest, name):
    shutil.copytree(pack / name, dest / name)


def test_all_pass_exit_zero(parity_pack, tmp_path, capsys):
    for name in ("scheduler", "mask_latents"):
        _copy_case(parity_pack, tmp_path, name)
    assert main(["parity", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("PASS mask_latents ")
    assert lines[1].startswith("PASS scheduler ")
    assert lines[-1] == "2 passed, 0 failed"


def test_unknown_and_wrong_cases_fail(parity_pack, tmp_path, capsys):
    _copy_case(parity_pack, tmp_path, "mask_latents")
    unknown = tmp_path / "mystery"
    shutil.copytree(parity_pack / "scheduler", unknown)
    meta = json.loads((unknown / "case.json").read_text())
    meta.update(case="mystery", upstream="somewhere/else.py Unknown")
    (unknown / "case.json").write_text(json.dumps(meta))
    wrong = tmp_path / "wrong"
    shutil.copytree(parity_pack / "scheduler", wrong)
    meta["case"], meta["upstream"] = "wrong", "utils/scheduler.py FlowMatchScheduler"
    (wrong / "case.json").write_text(json.dumps(meta))
    outputs = load_file(str(wrong / "outputs.safetensors"))
    outputs["sigmas"] = outputs["sigmas"] + 1e-3
    save_file(outputs, str(wrong / "outputs.safetensors"))

    assert main(["parity", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("PASS mask_latents")
    assert lines[1].startswith("FAIL mystery no runner for upstream")
    assert lines[2].startswith("FAIL wrong sigmas:")
    assert lines[-1] == "1 passed, 2 failed"


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_pack_is_an_error(tmp_path, make, capsys):
    pack = tmp_path / "pack"
    if make == "empty":
        pack.mkdir()
    assert main(["parity", str(pack)]) == 2
