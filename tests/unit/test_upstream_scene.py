"""Upstream v1.5 image scene folders read as image-job inputs, and the supplied-geometry object."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspatio_world.geometry.supplied_geometry import decode_geometry, encode_geometry
from inspatio_world.geometry.trajectory import PerFrameTrajectory, parse_trajectory
from inspatio_world.media.image_inputs import ImageInputError
from inspatio_world.media.upstream_scene import read_upstream_scene
from inspatio_world.stages.image_job_render import run_image_render
from inspatio_world.store.local import LocalStore

W, H = 40, 24


def _write_scene(folder: Path, views: int = 4, frames: int = 9, valid: int = 7) -> dict:
    rng = np.random.default_rng(views)
    (folder / "input").mkdir(parents=True)
    (folder / "depth").mkdir()
    (folder / "scene.json").write_text(json.dumps({"kind": "image", "views": views, "frames": frames, "valid_frames": valid,
                                                   "fps": 15.0, "resolution": [H, W]}))  # fmt: skip
    quantized = rng.integers(0, 65536, (views, H, W)).astype(np.uint16)
    names = ["depth.png"] if views == 1 else [f"depth_{i:02d}.png" for i in range(views)]
    for i in range(views):
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / "input" / f"view_{i:02d}.png")
        Image.fromarray(quantized[i]).save(folder / "depth" / names[i])
    (folder / "depth" / "metadata.txt").write_text("0.5 4.25\n")
    K = np.array([[30, 0, W / 2, 0, 31, H / 2, 0, 0, 1]] * views)
    np.savetxt(folder / "depth" / "source_intrinsics.txt", K)
    np.savetxt(folder / "depth" / "source_tcw.txt", np.tile(np.eye(4).ravel(), (views, 1)))
    targets = np.tile(np.eye(4).ravel(), (frames, 1))
    targets[:, 3] = np.linspace(0, -0.2, frames)
    np.savetxt(folder / "input" / "target_tcw.txt", targets)
    (folder / "input" / "prompt.txt").write_text("a quiet room\n")
    return {"quantized": quantized, "K": K}


def test_an_upstream_folder_reads_as_pictures_geometry_and_cameras(tmp_path):
    written = _write_scene(tmp_path / "scene")
    scene = read_upstream_scene(tmp_path / "scene")
    assert len(scene.images) == 4 and (scene.frames, scene.valid_frames, scene.fps, scene.prompt) == (9, 7, 15.0, "a quiet room")
    geometry = decode_geometry(scene.geometry)
    expected = (0.5 + written["quantized"].astype(np.float64) / 65535 * 3.75).astype(np.float32)  # upstream's decode
    assert np.array_equal(geometry["depth"], expected)
    assert np.array_equal(geometry["intrinsics"], written["K"].astype(np.float32).reshape(4, 3, 3))
    trajectory = parse_trajectory(scene.trajectory_text)
    assert isinstance(trajectory, PerFrameTrajectory) and len(trajectory.w2c) == 9
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(scene.images[2]))),
                          np.asarray(Image.open(tmp_path / "scene" / "input" / "view_02.png")))  # fmt: skip


def test_an_upstream_folder_runs_through_the_image_render_stage(tmp_path):
    _write_scene(tmp_path / "scene")
    scene = read_upstream_scene(tmp_path / "scene")
    store = LocalStore(tmp_path / "store")
    keys = [f"up/view{i}.png" for i in range(4)]
    for key, blob in zip(keys, scene.images):
        store.put_bytes(key, blob)
    store.put_bytes("up/geometry.safetensors", scene.geometry)
    out = run_image_render(store, keys, parse_trajectory(scene.trajectory_text), scene.trajectory_text,
                           geometry_key="up/geometry.safetensors", output_frames=scene.valid_frames)  # fmt: skip
    schedule = json.loads(store.get_bytes(out.keys["schedule.json"]))
    assert (out.frames, out.real_frames, schedule["aligned_frames"]) == (9, 7, 7)  # every padded camera rendered, trimmed to 7
    with pytest.raises(ImageInputError, match="output_frames must be 1..9"):
        run_image_render(store, keys, parse_trajectory(scene.trajectory_text), scene.trajectory_text,
                         geometry_key="up/geometry.safetensors", output_frames=10)  # fmt: skip


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "depth" / "depth_02.png").unlink(), "depth_02.png: cannot read"),
    (lambda f: (f / "input" / "view_03.png").unlink(), "expected 4 view_"),
    (lambda f: (f / "depth" / "metadata.txt").write_text("4 1"), "expected 'min max'"),
    (lambda f: (f / "depth" / "source_tcw.txt").write_text("1 0 0"), "expected 4 matrices of 4x4"),
    (lambda f: (f / "input" / "target_tcw.txt").write_text("1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1"), "expected 9 cameras"),
    (lambda f: Image.fromarray(np.zeros((H, W), np.uint8)).save(f / "depth" / "depth_00.png"), "uint16 depth PNG"),
    (lambda f: (f / "scene.json").write_text(json.dumps({"kind": "video", "views": 30})), "only image scenes"),
])  # fmt: skip
def test_a_broken_folder_names_the_file(tmp_path, damage, message):
    _write_scene(tmp_path / "scene")
    damage(tmp_path / "scene")
    with pytest.raises(ImageInputError, match=message):
        read_upstream_scene(tmp_path / "scene")


def test_geometry_object_round_trip_and_checks():
    depth, K, w2c = np.ones((1, 4, 6)), np.eye(3), np.eye(4)[None]
    arrays = decode_geometry(encode_geometry(depth, K, w2c))
    assert arrays["depth"].dtype == np.float32 and arrays["intrinsics"].shape == (3, 3)
    with pytest.raises(ImageInputError, match="not a safetensors file") as error:
        decode_geometry(b"junk")
    assert error.value.field == "geometry"
    with pytest.raises(ImageInputError, match=r"must be \[views, height, width\]"):
        decode_geometry(encode_geometry(np.ones((4, 6)), K, w2c))


def test_a_one_view_folder_uses_depth_png(tmp_path):
    written = _write_scene(tmp_path / "scene", views=1)
    scene = read_upstream_scene(tmp_path / "scene")
    assert len(scene.images) == 1 and decode_geometry(scene.geometry)["depth"].shape == (1, H, W)
    assert decode_geometry(scene.geometry)["depth"][0, 0, 0] == np.float32(0.5 + written["quantized"][0, 0, 0] / 65535 * 3.75)
