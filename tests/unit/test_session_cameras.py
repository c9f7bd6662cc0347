"""A live session's cameras: moves go where they say, holds, and bad cameras are refused."""

from __future__ import annotations

import numpy as np
import pytest

from inspatio_world.sessions.cameras import CameraError, CameraMove, CameraPath, check_camera, move_cameras, scene_centre

CENTRE = np.array([0.0, 0.0, 2.0])


def _centre_and_axis(w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c2w = np.linalg.inv(w2c)
    return c2w[:3, 3], c2w[:3, 2]


def test_forward_moves_the_camera_centre_along_its_viewing_axis():
    cameras = move_cameras(np.eye(4), CameraMove(forward=1.2), CENTRE)
    assert cameras.shape == (12, 4, 4)
    centres = np.array([_centre_and_axis(c)[0] for c in cameras])
    np.testing.assert_allclose(centres[-1], [0, 0, 1.2], atol=1e-12)
    np.testing.assert_allclose(centres[0], [0, 0, 0.1], atol=1e-12)  # 1/12 a frame
    np.testing.assert_allclose(_centre_and_axis(cameras[-1])[1], [0, 0, 1], atol=1e-12)  # still looking ahead


def test_right_and_up_strafe_in_the_cameras_axes():
    turned = np.linalg.inv(np.array([[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1.0]]))  # looking along world +x
    centre, _ = _centre_and_axis(move_cameras(turned, CameraMove(right=1.0, up=0.5), CENTRE)[-1])
    right, down = np.linalg.inv(turned)[:3, 0], np.linalg.inv(turned)[:3, 1]
    np.testing.assert_allclose(centre, right * 1.0 - down * 0.5, atol=1e-12)


def test_yaw_turns_right_and_pitch_looks_up_without_moving():
    centre, axis = _centre_and_axis(move_cameras(np.eye(4), CameraMove(yaw=30.0), CENTRE)[-1])
    np.testing.assert_allclose(centre, 0, atol=1e-12)
    np.testing.assert_allclose(axis, [np.sin(np.radians(30)), 0, np.cos(np.radians(30))], atol=1e-12)
    _, axis = _centre_and_axis(move_cameras(np.eye(4), CameraMove(pitch=20.0), CENTRE)[-1])
    assert axis[1] < -0.3  # towards -y: up in OpenCV axes


def test_orbit_moves_right_around_the_centre_and_keeps_looking_at_it():
    cameras = move_cameras(np.eye(4), CameraMove(orbit=90.0), CENTRE)
    centre, axis = _centre_and_axis(cameras[-1])
    np.testing.assert_allclose(centre, [2.0, 0, 2.0], atol=1e-9)  # a quarter turn to the right at radius 2
    np.testing.assert_allclose(axis, [-1, 0, 0], atol=1e-9)  # looking back at the centre
    for w2c in cameras:
        np.testing.assert_allclose((w2c @ np.append(CENTRE, 1))[:2], 0, atol=1e-9)  # on the optical axis throughout


def test_scene_centre_is_the_median_depth_on_frame_0s_axis():
    depth = np.full((4, 6), 3.0)
    depth[0, 0] = 100.0
    c2w = np.eye(4)
    c2w[:3, 3] = [1, 2, 3]
    np.testing.assert_allclose(scene_centre(depth, c2w), [1, 2, 6])


@pytest.mark.parametrize(("values", "message"), [
    ([1.0] * 15, "16 numbers"), ([float("nan")] + [0.0] * 15, "finite"),
    (np.zeros(16), "last row"), (np.diag([0.0, 1, 1, 1]).reshape(-1), "not invertible"),
])  # fmt: skip
def test_bad_cameras_are_refused(values, message):
    with pytest.raises(CameraError, match=message):
        check_camera(values)


def test_bad_moves_are_refused():
    with pytest.raises(CameraError, match="yaw"):
        CameraMove(yaw=float("inf")).check()


def test_a_path_holds_the_source_cameras_then_the_last_camera_given():
    sources = {t: np.eye(4) for t in range(100)}
    for t in sources:
        sources[t][0, 3] = t
    path = CameraPath(lambda t: sources[t], CENTRE)

    np.testing.assert_array_equal(path.w2c(slice(0, 3))[:, 0, 3], [0, 1, 2])  # the source cameras
    first = path.append(move_cameras(path.current(), CameraMove(forward=1.2), CENTRE), frontier=5, sent_unix_ns=9)
    assert first == 5 and len(path) == 17  # positions 3, 4 held at their source cameras, then 12 moved
    np.testing.assert_array_equal(path.w2c(slice(3, 5))[:, 0, 3], [3, 4])
    np.testing.assert_array_equal(path.w2c(slice(20, 21))[0], path.cameras[16])  # held at the last one given
    assert path.latest_sent(5) == 0 and path.latest_sent(6) == 9
    assert [m.position for m in path.take_marks(6)] == [5] and path.take_marks(100) == []


def test_moves_from_a_non_rigid_camera_stay_rigid_through_many_orbits():
    """Untrained depth weights give source cameras that are not rotations; moves must not drift into
    a singular matrix (the H200 bench with random weights once did)."""
    start = np.eye(4)
    start[:3, :3] = [[0.3, 0.0, 0.0], [0.0, 0.0, 0.0], [0.1, 0.0, 2.0]]  # rank 2: not invertible
    camera = start
    for _ in range(50):
        camera = move_cameras(camera, CameraMove(orbit=5.0, forward=0.05, yaw=3.0), centre=np.array([0.0, 0.0, 2.0]))[-1]
    rotation = camera[:3, :3]
    assert np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(rotation), 1.0)
    assert np.allclose(camera[3], (0, 0, 0, 1))
