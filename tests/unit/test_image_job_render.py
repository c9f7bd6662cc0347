"""The image job's depth/render stage against a local store: pictures in, lossless render, mask and
source videos plus a schedule out, cached by content."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import save as save_safetensors

from inspatio_world.geometry.trajectory import PerFrameTrajectory, parse_trajectory
from inspatio_world.media.dataset_inputs import load_render_and_mask, load_source_video
from inspatio_world.media.decode import read_images
from inspatio_world.media.image_inputs import ImageInputError
from inspatio_world.media.lossless import read_lossless_masks
from inspatio_world.models.depth import DepthEstimator, DepthSettings
from inspatio_world.models.depth_checkpoint import build_network, network_config
from inspatio_world.pipeline.tiny_conditioning import TINY_DA3_PRESET
from inspatio_world.stages.identity import ModelIdentity
from inspatio_world.stages.image_job_render import run_image_render
from inspatio_world.store.local import LocalStore

W, H = 56, 32


@pytest.fixture(scope="module")
def estimator() -> DepthEstimator:
    torch.manual_seed(0)
    return DepthEstimator(build_network(network_config(TINY_DA3_PRESET), "cpu"), DepthSettings(process_res=56, output_size=(W, H)))


def _path(frames: int) -> tuple[PerFrameTrajectory, str]:
    lines = []
    for s in np.linspace(0, 0.2, frames):
        w2c = np.eye(4)
        w2c[0, 3] = -s
        lines.append(" ".join(str(v) for v in w2c.ravel()))
    text = "\n".join(lines)
    return parse_trajectory(text), text


def _upload(store: LocalStore, count: int) -> list[str]:
    rng = np.random.default_rng(count)
    keys = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(buffer, format="PNG")
        keys.append(f"uploads/view{i}.png")
        store.put_bytes(keys[-1], buffer.getvalue())
    return keys


def test_four_views_render_padded_to_whole_blocks_and_cached(tmp_path, estimator):
    store = LocalStore(tmp_path / "store")
    images = _upload(store, 4)
    trajectory, text = _path(5)  # 5 cameras -> padded to 9 frames (3 latents)
    identity = ModelIdentity("da3", "tiny")
    out = run_image_render(store, images, trajectory, text, estimator, identity)
    assert (out.frames, out.real_frames, out.timing.cache_hit) == (9, 5, False)
    schedule = json.loads(store.get_bytes(out.keys["schedule.json"]))
    assert schedule["source_index"] == list(range(9)) and schedule["aligned_frames"] == 5 and schedule["fps"] == 15.0
    assert len(schedule["source_views"]) == 3 and len(set(schedule["source_views"])) == 3
    folder = tmp_path / "check"
    folder.mkdir()
    render = read_images(store.download(out.keys["render.mkv"], folder / "render.mkv"))
    source = read_images(store.download(out.keys["source.mkv"], folder / "source.mkv"))
    mask = read_lossless_masks(store.download(out.keys["mask.mkv"], folder / "mask.mkv"))
    # (random DA3 weights give wild focal lengths, so what the render shows is meaningless here)
    assert render.shape == source.shape == (9, H, W, 3) and mask.shape == (9, H, W)
    assert torch.equal(render[4], render[8]) and torch.equal(mask[4], mask[8])  # the padding repeats the last camera
    again = run_image_render(store, images, trajectory, text, estimator, identity)
    assert again.timing.cache_hit and again.keys == out.keys
    other, other_text = _path(6)
    assert run_image_render(store, images, other, other_text, estimator, identity).keys != out.keys


def test_supplied_geometry_replaces_da3(tmp_path):
    store = LocalStore(tmp_path / "store")
    images = _upload(store, 1)
    K = np.array([[30.0, 0, W / 2], [0, 30, H / 2], [0, 0, 1]], np.float32)
    store.put_bytes("uploads/geometry.safetensors", save_safetensors(
        {"depth": np.full((1, H, W), 2.0, np.float32), "intrinsics": K, "w2c": np.eye(4, dtype=np.float32)[None]}))  # fmt: skip
    trajectory, text = _path(1)
    out = run_image_render(store, images, trajectory, text, geometry_key="uploads/geometry.safetensors")
    assert (out.frames, out.real_frames) == (9, 1)
    mask = read_lossless_masks(store.download(out.keys["mask.mkv"], tmp_path / "mask.mkv"))
    assert mask.all()  # seen from its own camera the picture covers every pixel
    source = read_images(store.download(out.keys["source.mkv"], tmp_path / "source.mkv"))
    picture = Image.open(io.BytesIO(store.get_bytes(images[0]))).resize((W, 34), Image.Resampling.BICUBIC)  # 80x48 * 0.7
    assert np.array_equal(source[0].numpy(), np.asarray(picture)[1:33])  # fitted to the depth maps: cover, centre crop
    # the generator reads them with the video job's readers: source at the render size, render and mask aligned
    source = load_source_video(store.download(out.keys["source.mkv"], tmp_path / "s.mkv"), size=(H, W))
    render, mask = load_render_and_mask(store.download(out.keys["render.mkv"], tmp_path / "r.mkv"),
                                        store.download(out.keys["mask.mkv"], tmp_path / "m.mkv"))  # fmt: skip
    assert source.shape == render.shape == mask.shape == (9, 3, H, W)
    assert torch.equal(source[0], torch.from_numpy(np.array(picture)[1:33]).permute(2, 0, 1) / 127.5 - 1)
    assert set(mask.unique().tolist()) == {1.0} and render.min() >= -1 and render.max() <= 1
    store.put_bytes("uploads/bad.safetensors", save_safetensors({"depth": np.ones((1, H, W), np.float32)}))
    with pytest.raises(ImageInputError, match="lacks intrinsics, w2c"):
        run_image_render(store, images, trajectory, text, geometry_key="uploads/bad.safetensors")
    store.put_bytes("uploads/junk.safetensors", b"not a safetensors file")
    with pytest.raises(ImageInputError, match="not a safetensors file"):
        run_image_render(store, images, trajectory, text, geometry_key="uploads/junk.safetensors")


def test_inputs_are_refused_before_any_work(tmp_path, estimator):
    store = LocalStore(tmp_path / "store")
    images = _upload(store, 1)
    identity = ModelIdentity("da3", "tiny")
    keyframes = parse_trajectory("0 10\n0 0\n1 1")
    with pytest.raises(ImageInputError, match="per-frame camera path") as error:
        run_image_render(store, images, keyframes, "0 10\n0 0\n1 1", estimator, identity)
    assert error.value.field == "trajectory"
    trajectory, text = _path(3)
    with pytest.raises(ValueError, match="not both"):
        run_image_render(store, images, trajectory, text, estimator, identity, geometry_key="x")
    with pytest.raises(ImageInputError, match="1 picture or 4 views"):
        run_image_render(store, images * 2, trajectory, text, estimator, identity)
