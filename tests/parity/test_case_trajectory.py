"""Every trajectory-based runner reads a case's custom trajectory the documented way: the pack README
ships it in the case folder as `custom_traj.txt`, named "custom" in case.json."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from inspatio_world.geometry.trajectory import SHIPPED_TRAJECTORIES
from inspatio_world.parity.case import CaseError, ParityCase
from inspatio_world.parity.runners import find_runner

SHIPPED = "x_y_circle_cycle.txt"
FRAMES, HEIGHT, WIDTH = 3, 6, 8

# Tiny case.json bodies in the public pack's format, one per trajectory-based runner.
CASES = {
    "warp_render": lambda traj: {
        "upstream": "scripts/render_point_cloud.py render_point_cloud_warper",
        "args": {"width": WIDTH, "height": HEIGHT, "trajectory": traj, "relative_to_source": False, "rotation_only": False, "freeze_repeat": 0, "freeze_frame": None},
    },
    "frame_schedule": lambda traj: {
        "upstream": "datasets/test_dataset.py TestDataset.get_data",
        "runs": [{"key": "run0", "traj": traj, "n_source_frames": 20, "n_render_frames": 20, "freeze_repeat": 0, "freeze_frame": None}],
    },
    "trajectory": lambda traj: {
        "upstream": "datasets/utils.py txt_interpolation",
        "runs": [{"traj": traj, "N": FRAMES, "rotation_only": False, "relative_to_source": False}],
    },
}


def _case(folder, kind: str, traj: str, custom_text: str | None = None) -> ParityCase:
    folder.mkdir()
    (folder / "case.json").write_text(json.dumps({"case": folder.name, **CASES[kind](traj)}))
    w2c = torch.eye(4, dtype=torch.float64)[:3].repeat(FRAMES, 1, 1)
    w2c[:, 0, 3] = torch.arange(FRAMES) * 0.1
    inputs = {
        "frames_rgb_uint8": torch.randint(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)),
        "depth": torch.full((FRAMES, HEIGHT, WIDTH), 2.0),
        "intrinsic_K": torch.tensor([[8.0, 0, WIDTH / 2], [0, 8.0, HEIGHT / 2], [0, 0, 1]], dtype=torch.float64),
        "source_w2c_3x4": w2c,
    }
    save_file(inputs, str(folder / "inputs.safetensors"))
    save_file({}, str(folder / "outputs.safetensors"))
    if custom_text is not None:
        (folder / "custom_traj.txt").write_text(custom_text)
    return ParityCase(folder)


def _run(case: ParityCase) -> list[torch.Tensor]:
    with torch.no_grad():
        return list(find_runner(case)(case, torch.device("cpu")).values())


@pytest.mark.parametrize("name", ["custom", "custom_traj.txt"])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_runner_reads_custom_traj_from_the_case_folder(tmp_path, kind, name):
    shipped_text = (SHIPPED_TRAJECTORIES / SHIPPED).read_text()
    want = _run(_case(tmp_path / "shipped", kind, SHIPPED))
    got = _run(_case(tmp_path / "custom", kind, name, custom_text=shipped_text))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    # ... and it is the case's file that is read, not a shipped one
    other = _run(_case(tmp_path / "other", kind, name, custom_text="0 10\n0 -20\n0.5 0.5\n"))
    assert any(not torch.equal(o, w) for o, w in zip(other, want))


def test_missing_custom_traj_names_the_file(tmp_path):
    case = _case(tmp_path / "case", "warp_render", "custom")
    with pytest.raises(CaseError, match="custom_traj.txt"):
        case.trajectory_file("custom")
