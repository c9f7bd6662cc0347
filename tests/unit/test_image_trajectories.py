"""The example camera paths for image scenes (traj/image_*.txt): they load as per-frame cameras,
start at the first view, fit four-view jobs without padding, and move as their names say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from inspatio_world.geometry.trajectory import PerFrameTrajectory, find_trajectory, load_trajectory
from inspatio_world.stages.image_render import check_frame_count

TOOL = Path(__file__).resolve().parents[2] / "tools" / "image_trajectories.py"
NAMES = ("image_stroll", "image_orbit", "image_rise")


def _cameras(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(camera centres [N, 3], viewing directions [N, 3]) in the world of the first view."""
    traj = load_trajectory(find_trajectory(f"{name}.txt"))
    assert isinstance(traj, PerFrameTrajectory)
    c2w = np.linalg.inv(traj.w2c)
    return c2w[:, :3, 3], c2w[:, :3, 2]


@pytest.mark.parametrize("name", NAMES)
def test_each_path_loads_starts_at_the_first_view_and_fits_four_views(name):
    traj = load_trajectory(find_trajectory(f"{name}.txt"))
    assert traj.w2c.shape == (81, 4, 4)
    assert np.allclose(traj.w2c[0], np.eye(4))
    check_frame_count(4, len(traj.w2c))  # whole blocks of 3 latents: no padding needed


def test_stroll_walks_forward_with_a_little_sway():
    centres, forward = _cameras("image_stroll")
    assert np.all(np.diff(centres[:, 2]) > 0) and centres[-1, 2] == pytest.approx(0.6)
    assert np.abs(centres[:, 0]).max() == pytest.approx(0.05, abs=1e-3) and np.abs(centres[:, 1]).max() < 0.03
    yaw = np.degrees(np.arctan2(forward[:, 0], forward[:, 2]))
    assert 4.9 < yaw.max() < 5.1 and -5.1 < yaw.min() < -4.9


def test_orbit_circles_the_point_ahead_and_comes_back():
    centres, forward = _cameras("image_orbit")
    pivot = np.array([0.0, 0.0, 1.0])
    assert np.allclose(np.linalg.norm(centres - pivot, axis=1), 1.0)
    to_pivot = (pivot - centres) / np.linalg.norm(pivot - centres, axis=1, keepdims=True)
    assert np.allclose(forward, to_pivot, atol=1e-6)  # always looking at it
    angle = np.degrees(np.arctan2(-centres[:, 0], 1.0 - centres[:, 2]))
    assert angle.max() == pytest.approx(20, abs=0.1) and angle.min() == pytest.approx(-20, abs=0.1)
    assert np.allclose(centres[-1], centres[0], atol=1e-6)


def test_rise_goes_up_and_tilts_down_to_keep_the_scene_in_view():
    centres, forward = _cameras("image_rise")
    assert np.all(np.diff(centres[:, 1]) < 0) and centres[-1, 1] == pytest.approx(-0.4)  # OpenCV y is down
    assert np.allclose(centres[:, 0], 0) and centres[-1, 2] == pytest.approx(0.1)
    assert np.all(np.diff(forward[:, 1]) >= 0) and forward[-1, 1] > 0.15  # looking further down as it rises


def test_the_shipped_files_are_what_the_tool_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("image_trajectories", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.write(tmp_path)
    for name in NAMES:
        assert (tmp_path / f"{name}.txt").read_text() == find_trajectory(f"{name}.txt").read_text()
