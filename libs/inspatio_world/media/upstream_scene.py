"""Upstream v1.5's image scene folders (its examples/image_example_*, multiview_example_*) read as an
image job's inputs, so a scene prepared for upstream runs here unchanged.

A folder holds (upstream examples/README.md, datasets/scene_depth_io.py):
  scene.json                 {"kind": "image", "views": 1 | 4, "frames": F (padded), "valid_frames": n, "fps", ...}
  input/view_00.png ...      the pictures (832x480; sorted by name)
  input/target_tcw.txt       F rows of 16 numbers: OpenCV world-to-camera 4x4, row-major
  input/prompt.txt           optional
  depth/depth.png            one view, or depth/depth_00.png ... for four: single-channel uint16
  depth/metadata.txt         "min max" in metres: depth = min + q / 65535 * (max - min) (float64, then float32)
  depth/source_intrinsics.txt  9 numbers per view;  depth/source_tcw.txt  16 numbers per view

`read_upstream_scene` returns the picture files' bytes, the geometry as the object
stages/image_job_render.py takes (geometry/supplied_geometry.py), the target camera path's text
(all F rows: upstream renders every padded row, then trims the output to `valid_frames`), and the
prompt and fps. Anything missing or malformed is an ImageInputError naming the file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..geometry.supplied_geometry import encode_geometry
from . import depth_uint16
from .image_inputs import ImageInputError


@dataclass(frozen=True)
class UpstreamScene:
    images: list[bytes]  # the view_*.png files, in name order
    geometry: bytes  # encode_geometry(depth, intrinsics, w2c)
    trajectory_text: str  # input/target_tcw.txt
    frames: int  # target cameras (upstream's padded "frames")
    valid_frames: int  # the frames the output is trimmed to
    fps: float
    prompt: str | None


def read_upstream_scene(folder: str | Path) -> UpstreamScene:
    folder = Path(folder)
    meta = json.loads(_read(folder / "scene.json").decode())
    if meta.get("kind") != "image" or meta.get("views") not in (1, 4):
        raise ImageInputError(f"{folder}: only image scenes with 1 or 4 views are read here, got kind {meta.get('kind')!r} "
                              f"with {meta.get('views')} views")  # fmt: skip
    views = int(meta["views"])
    pictures = sorted((folder / "input").glob("view_*.png"))
    if len(pictures) != views:
        raise ImageInputError(f"{folder}/input: expected {views} view_*.png, found {len(pictures)}")
    names = ["depth.png"] if views == 1 else [f"depth_{i:02d}.png" for i in range(views)]
    low, high = _depth_range(folder / "depth" / "metadata.txt")
    depth = np.stack([_decode_depth(folder / "depth" / name, low, high) for name in names])
    intrinsics = _matrices(folder / "depth" / "source_intrinsics.txt", 3, views)
    w2c = _matrices(folder / "depth" / "source_tcw.txt", 4, views)
    trajectory = _read(folder / "input" / "target_tcw.txt").decode()
    frames = int(meta["frames"])
    if len(_numbers(folder / "input" / "target_tcw.txt", trajectory)) != 16 * frames:
        raise ImageInputError(f"{folder}/input/target_tcw.txt: expected {frames} cameras of 16 numbers (scene.json frames)")
    prompt_path = folder / "input" / "prompt.txt"
    return UpstreamScene(
        images=[_read(path) for path in pictures], geometry=encode_geometry(depth, intrinsics, w2c),
        trajectory_text=trajectory, frames=frames, valid_frames=int(meta.get("valid_frames", frames)),
        fps=float(meta.get("fps", 15.0)), prompt=prompt_path.read_text().strip() if prompt_path.is_file() else None,
    )  # fmt: skip


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _numbers(path: Path, text: str | None = None) -> np.ndarray:
    try:
        values = np.array((text if text is not None else _read(path).decode()).split(), dtype=np.float64)
    except ValueError:
        raise ImageInputError(f"{path}: expected whitespace-separated numbers") from None
    if not np.isfinite(values).all():
        raise ImageInputError(f"{path}: contains NaN or infinite values")
    return values


def _depth_range(path: Path) -> tuple[float, float]:
    values = _numbers(path)
    if values.size != 2 or values[0] > values[1]:
        raise ImageInputError(f"{path}: expected 'min max' depth in metres, got {values.tolist()}")
    return float(values[0]), float(values[1])


def _decode_depth(path: Path, low: float, high: float) -> np.ndarray:
    with Image.open(io.BytesIO(_read(path))) as image:
        if image.mode not in ("I;16", "I"):
            raise ImageInputError(f"{path}: expected a single-channel uint16 depth PNG, got mode {image.mode}")
        return depth_uint16.decode(np.asarray(image).astype(np.uint16), low, high)


def _matrices(path: Path, size: int, count: int) -> np.ndarray:
    values = _numbers(path)
    if values.size != size * size * count:
        raise ImageInputError(f"{path}: expected {count} matrices of {size}x{size} numbers, got {values.size} numbers")
    return values.astype(np.float32).reshape(count, size, size)
