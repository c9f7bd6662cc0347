"""Trajectory files: parsing and validation, resampling, camera geometry, target poses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspatio_world.geometry.trajectory import (
    SHIPPED_TRAJECTORIES,
    KeyframeTrajectory,
    PerFrameTrajectory,
    TrajectoryError,
    interpolate,
    load_trajectory,
    parse_trajectory,
    relative_c2w,
    target_c2ws,
    total_angle,
)

IDENTITY_LINE = "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"


def _w2c_line(yaw_deg: float = 0.0, t=(0.0, 0.0, 0.0), last_row="0 0 0 1") -> str:
    c, s = np.cos(np.deg2rad(yaw_deg)), np.sin(np.deg2rad(yaw_deg))
    rows = [[c, 0, s, t[0]], [0, 1, 0, t[1]], [-s, 0, c, t[2]]]
    return " ".join(repr(float(v)) for row in rows for v in row) + " " + last_row


def test_keyframe_lines_may_differ_in_length():
    traj = parse_trajectory("0 10 -10\n0 5\n1 2 3 4 5\n")
    assert traj == KeyframeTrajectory(pitch=(0.0, 10.0, -10.0), yaw=(0.0, 5.0), r=(1.0, 2.0, 3.0, 4.0, 5.0))


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("0 1\n0 1\n", "", "expected 3 lines"),
        ("0 1\n0 1\n1 1\n1 1\n", "", "expected 3 lines"),
        ("0 1\n0 x\n1 1\n", ":2:", "'x' is not a number"),
        ("0 nan\n0 1\n1 1\n", ":1:", "not a finite number"),
        ("0 1\n0 1\n1 -inf\n", ":3:", "not a finite number"),
        ("0 1\n5\n1 1\n", ":2:", "at least 2 keyframes"),
        ("0 400\n0 1\n1 1\n", ":1:", "outside [-360, 360] degrees"),
        ("0 1\n0 1\n1 2000\n", ":3:", "outside [-1000, 1000]"),
        ("# comment\n\n0 1\n0 ?\n1 1\n", ":4:", "not a number"),  # physical line numbers
    ],
)
def test_keyframe_errors_name_the_line(text, where, what):
    with pytest.raises(TrajectoryError) as err:
        parse_trajectory(text, source="cam.txt")
    message = str(err.value)
    assert message.startswith(f"cam.txt{where}") and what in message


@pytest.mark.parametrize(
    "lines, where, what",
    [
        ([IDENTITY_LINE, "1 0 0 0 0 1 0 0 0 0 1 0 0 0 0", IDENTITY_LINE, IDENTITY_LINE], ":2:", "expected 16 numbers"),
        ([IDENTITY_LINE, _w2c_line(last_row="0 0 1 1"), IDENTITY_LINE, IDENTITY_LINE], ":2:", "last row"),
        ([IDENTITY_LINE, IDENTITY_LINE, "2 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1", IDENTITY_LINE], ":3:", "orthonormal"),
        ([IDENTITY_LINE, "-1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1", IDENTITY_LINE, IDENTITY_LINE], ":2:", "orthonormal"),
        ([IDENTITY_LINE, IDENTITY_LINE, IDENTITY_LINE, _w2c_line(t=(0, 5000, 0))], ":4:", "translation"),
    ],
)
def test_per_frame_errors_name_the_line(lines, where, what):
    with pytest.raises(TrajectoryError) as err:
        parse_trajectory("\n".join(lines), source="cam.txt")
    assert str(err.value).startswith(f"cam.txt{where}") and what in str(err.value)


def test_per_frame_format():
    lines = [_w2c_line(yaw, t=(0.1 * i, 0, 0)) for i, yaw in enumerate((0, 5, 10, 15))]
    traj = parse_trajectory("\n".join(lines))
    assert isinstance(traj, PerFrameTrajectory) and traj.w2c.shape == (4, 4, 4) and traj.w2c.dtype == np.float64
    assert traj.w2c[2, 0, 3] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        traj.w2c[0, 0, 0] = 2.0  # frozen
    # exactly 3 lines of 4x4s are still cameras, recognised by their 0 0 0 1 ends
    assert isinstance(parse_trajectory("\n".join(lines[:3])), PerFrameTrajectory)


def test_load_names_the_file(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("0 1\n0 1\n1 oops\n")
    with pytest.raises(TrajectoryError, match=r"bad\.txt:3: 'oops'"):
        load_trajectory(path)
    with pytest.raises(TrajectoryError, match="missing.txt"):
        load_trajectory(tmp_path / "missing.txt")


def test_every_shipped_file_parses():
    names = {p.name for p in SHIPPED_TRAJECTORIES.glob("*.txt")}
    expected = {"x_y_circle_cycle.txt", "zoom_out_in.txt", "pan_left.txt", "pan_right.txt", "tilt_up.txt", "orbit_left.txt", "dolly_in.txt"}
    assert expected <= names
    for name in names:  # traj/image_*.txt are per-frame camera paths for image scenes (test_image_trajectories.py)
        kind = PerFrameTrajectory if name.startswith("image_") else KeyframeTrajectory
        assert isinstance(load_trajectory(SHIPPED_TRAJECTORIES / name), kind), name


def _last_pose(name: str) -> np.ndarray:
    return relative_c2w(load_trajectory(SHIPPED_TRAJECTORIES / name), 9)[-1]


def test_shipped_files_move_as_named():
    forward = lambda c2w: c2w[:3, 2]  # the camera's viewing direction in camera 0's frame (OpenCV axes)
    for name, axis, sign in (("pan_left.txt", 0, -1), ("pan_right.txt", 0, 1), ("tilt_up.txt", 1, -1)):
        pose = _last_pose(name)
        assert np.all(pose[:3, 3] == 0), name  # pans and tilts turn in place
        assert np.sign(forward(pose)[axis]) == sign, name
    orbit = _last_pose("orbit_left.txt")
    assert orbit[0, 3] < 0 and forward(orbit)[0] > 0  # moved left, looking back right at the centre
    dolly = _last_pose("dolly_in.txt")
    assert np.array_equal(dolly[:3, :3], np.eye(3)) and dolly[:3, 3].tolist() == [0, 0, 0.5]


def test_spline_resampling_pins_only_r_ends():
    traj = load_trajectory(SHIPPED_TRAJECTORIES / "zoom_out_in.txt")
    pitch, yaw, r = interpolate(traj, 49)
    assert pitch.shape == yaw.shape == r.shape == (49,) and r.dtype == np.float64
    assert r[0] == 0 and r[-1] == 0 and abs(r[1]) > 0.05  # pinned ends jump from the spline's +-0.088
    circle = load_trajectory(SHIPPED_TRAJECTORIES / "x_y_circle_cycle.txt")
    pitch, _, _ = interpolate(circle, 247)
    assert pitch[0] != 0 and -20 < pitch.min() < -19  # smoothing spline: ends drift, peaks attenuated
    assert total_angle(circle) == 240.0


def test_orbit_geometry():
    traj = load_trajectory(SHIPPED_TRAJECTORIES / "x_y_circle_cycle.txt")
    poses = relative_c2w(traj, 49)
    assert poses.shape == (49, 4, 4) and poses.dtype == np.float64
    centre = np.array([0.0, 0.0, 1.0])  # r = 1: the point 1 ahead of camera 0
    to_centre = centre - poses[:, :3, 3]
    assert np.allclose(np.linalg.norm(to_centre, axis=1), 1.0, atol=1e-6)
    assert np.allclose(to_centre, poses[:, :3, 2], atol=1e-6)  # each camera looks at the centre
    assert np.allclose(poses[:, :3, :3] @ poses[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-6)
    turned = relative_c2w(traj, 49, rotation_only=True)
    assert np.array_equal(turned[:, :3, :3], poses[:, :3, :3]) and np.all(turned[:, :3, 3] == 0)
    scaled = relative_c2w(KeyframeTrajectory((0, 10), (0, 20), (1, 1)), 5, radius=2.0)
    unit = relative_c2w(KeyframeTrajectory((0, 10), (0, 20), (1, 1)), 5)
    assert np.allclose(scaled[:, :3, 3], 2 * unit[:, :3, 3], atol=1e-6)


def test_dolly_zoom_moves_along_the_axis_even_when_rotation_only():
    traj = load_trajectory(SHIPPED_TRAJECTORIES / "zoom_out_in.txt")
    _, _, r = interpolate(traj, 17)
    for rotation_only in (False, True):
        poses = relative_c2w(traj, 17, rotation_only=rotation_only)
        assert np.all(poses[:, :3, :3] == np.eye(3))
        assert np.array_equal(poses[:, :3, 3], np.stack([0 * r, 0 * r, r.astype(np.float32)], 1))


def _moving_sources(n: int) -> torch.Tensor:
    sources = torch.eye(4).repeat(n, 1, 1)
    sources[:, 2, 3] = torch.linspace(0, 1, n)  # walking forward
    return sources


def test_target_poses_absolute_and_relative():
    traj = KeyframeTrajectory((0, 10), (0, 20), (1, 1))
    sources = _moving_sources(5)
    expected = torch.from_numpy(relative_c2w(traj, 5)).float()
    absolute = target_c2ws(traj, sources, rotation_only=False, relative_to_source=False)
    assert absolute.dtype == torch.float32 and torch.allclose(absolute, expected, atol=1e-6)
    follow = target_c2ws(traj, sources, rotation_only=False, relative_to_source=True)
    assert torch.allclose(follow, sources @ expected, atol=1e-6)  # C_0 = I here


def test_target_poses_per_frame():
    traj = parse_trajectory("\n".join(_w2c_line(yaw, t=(0, 0.1, 0)) for yaw in (0, 5, 10, 15, 20)))
    sources = _moving_sources(5)
    c2w = torch.linalg.inv(torch.tensor(traj.w2c)).float()
    assert torch.allclose(target_c2ws(traj, sources, False, False), c2w, atol=1e-6)
    assert torch.allclose(target_c2ws(traj, sources, False, True), sources @ c2w, atol=1e-6)
    assert torch.all(target_c2ws(traj, sources, True, False)[:, :3, 3] == 0)
    with pytest.raises(TrajectoryError, match="5 cameras for 4 frames"):
        target_c2ws(traj, sources[:4], False, False)
