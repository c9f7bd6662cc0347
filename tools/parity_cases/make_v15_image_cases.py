"""Write v1.5 image-scene parity cases by running upstream v1.5's own render code, in the public pack's format.

    python tools/parity_cases/make_v15_image_cases.py UPSTREAM_V15_CHECKOUT OUT_DIR

UPSTREAM_V15_CHECKOUT holds inspatio/inspatio-world-v1.5's `pipeline/render_scene.py`,
`pipeline/depth_warper.py` and `pipeline/scene_schema.py`; they are imported from there and do all
the computing. Three things around them are replaced, and each case.json says so:

* `load_scene` (it reads PNG views, uint16 depth PNGs and camera text files) returns this script's
  seeded random scene instead: the same arrays, in the dtypes it would produce (uint8 RGB views,
  float32 depth, float32 K / Tcw);
* `video_writer` (an ffmpeg pipe) captures the raw rgb24 bytes handed to it, i.e. the frames right
  before encoding (the mask is written losslessly upstream anyway);
* `condition_ready` / `complete_render` (the scene cache's completion record) report "not ready" and
  capture the completion record's extra fields (source_indices, overlap_pixels, chunk_views).

Cases: a four-view scene (render_one's multi-image path: per-view splat, nearer-wins fusion,
select_chunk_top3, per-latent source stream), a one-view scene (the image path: view 0 repeated),
`project_source` for a few (frame, view) pairs (the per-view splat with its splatted depth), and
`select_chunk_top3` on tie-heavy integer scores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

HEIGHT, WIDTH = 16, 24
FPS = 15.0


def _stub_modules() -> dict:
    """Modules render_scene imports whose real versions need ffmpeg or a scene folder."""
    captured: dict = {"videos": {}, "extra": None}

    @contextlib.contextmanager
    def video_writer(path, fps, width, height, lossless=False):
        frames: list[bytes] = []
        captured["videos"][Path(path).name] = (frames, height, width)
        yield types.SimpleNamespace(write=frames.append)

    def complete_render(record, output_root, extra=None):
        captured["extra"] = extra

    def _unused(*_args, **_kwargs):
        raise AssertionError("replaced by the driver's load_scene")

    modules = {
        "pipeline.video_writer": {"video_writer": video_writer},
        "pipeline.scene_cache": {"condition_ready": lambda record, root: False, "complete_render": complete_render},
        "datasets.scene_depth_io": {name: _unused for name in (
            "decode_image_depth", "decode_video_depth_frame", "image_depth_paths", "read_range")},
    }
    for name, attributes in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    return captured


def _rotation_y(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def _w2c(yaw: float, position: tuple[float, float, float]) -> np.ndarray:
    """World-to-camera of a camera at `position` turned by `yaw` degrees about y."""
    c2w = np.eye(4)
    c2w[:3, :3] = _rotation_y(yaw)
    c2w[:3, 3] = position
    return np.linalg.inv(c2w).astype(np.float32)


def random_scene(seed: int, views: int, frames: int) -> dict[str, np.ndarray]:
    """Views of one place (cameras spread along x, turned a little), depth 1.5-4 with some invalid
    (0) pixels, per-view focal lengths, and a target path that pans across them."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (views, HEIGHT, WIDTH, 3), dtype=np.uint8)
    depth = rng.uniform(1.5, 4.0, (views, HEIGHT, WIDTH)).astype(np.float32)
    depth[rng.random((views, HEIGHT, WIDTH)) < 0.05] = 0.0
    fx = rng.uniform(18.0, 26.0, views)
    K = np.stack([np.array([[f, 0, WIDTH / 2], [0, f * 1.02, HEIGHT / 2], [0, 0, 1]]) for f in fx]).astype(np.float32)
    offsets = np.linspace(-0.6, 0.6, views) if views > 1 else np.zeros(1)
    w2c = np.stack([_w2c(float(rng.uniform(-8, 8)) if v else 0.0, (float(offsets[v]), 0.0, 0.0) if v else (0.0, 0.0, 0.0))
                    for v in range(views)])  # fmt: skip
    t = np.linspace(0.0, 1.0, frames)
    targets = np.stack([_w2c(-12 + 24 * s, (-0.8 + 1.6 * s, 0.05 * math.sin(6 * s), 0.2 * s)) for s in t])
    return {"images": images, "depth": depth, "intrinsics": K, "w2c": w2c, "target_w2c": targets}


def run_render_one(render_scene, captured: dict, scene: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    views, frames = len(scene["images"]), len(scene["target_w2c"])
    record = {"id": "case", "kind": "image", "views": views, "frames": frames, "fps": FPS, "resolution": [HEIGHT, WIDTH]}

    def load_scene(_record):
        def read(index):
            return scene["images"][index], scene["depth"][index]

        return record, scene["intrinsics"], scene["w2c"], scene["target_w2c"], read, []

    render_scene.load_scene = load_scene
    captured["videos"].clear()
    with tempfile.TemporaryDirectory() as root:
        render_scene.render_one(record, torch.device("cpu"), Path(root))

    def video(name: str) -> torch.Tensor:
        chunks, height, width = captured["videos"][name]
        return torch.from_numpy(np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(-1, height, width, 3).copy())

    out = {"render_uint8": video("render.mp4"), "mask_uint8": video("mask.mp4")[..., 0], "source_uint8": video("source.mp4")}
    extra = captured["extra"]
    if extra is not None:
        out["source_indices"] = torch.tensor(extra["source_indices"], dtype=torch.int64)
        out["overlap_pixels"] = torch.tensor(extra["overlap_pixels"], dtype=torch.int64)
        out["chunk_views"] = torch.tensor(extra["chunk_views"], dtype=torch.int64)
    return out


def run_project_source(render_scene, warper_class, scene: dict[str, np.ndarray], pairs) -> dict[str, torch.Tensor]:
    warper = warper_class()
    device = torch.device("cpu")
    target_k = torch.from_numpy(scene["intrinsics"][0].copy())[None]
    targets = torch.from_numpy(scene["target_w2c"].copy())
    out = {}
    for frame, view in pairs:
        source = render_scene.prepare_source(warper, scene["images"][view], scene["depth"][view], scene["w2c"][view],
                                             scene["intrinsics"][view], device)  # fmt: skip
        rgb, distance, known = render_scene.project_source(warper, source, targets[frame:frame + 1], target_k)
        out[f"f{frame}_v{view}/rgb"], out[f"f{frame}_v{view}/depth"], out[f"f{frame}_v{view}/known"] = rgb, distance, known
    return out


def _inputs(scene: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in scene.items()}


def _layout() -> str:
    return ("images [V, H, W, 3] uint8 RGB; depth [V, H, W] float32 source z; intrinsics [V, 3, 3] float32; "
            "w2c [V, 4, 4] float32 source world-to-camera (upstream source_tcw); target_w2c [F, 4, 4] float32 "
            "(upstream target_tcw); target K = intrinsics[0]; OpenCV axes, integer pixel grid")  # fmt: skip


def _describe(tensors: dict[str, torch.Tensor]) -> dict:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in tensors.items()}


def write_case(out: Path, name: str, meta: dict, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"case": name, **meta, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "inputs": _describe(inputs), "outputs": _describe(outputs)}  # fmt: skip
    (folder / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(folder / "inputs.safetensors"))
    save_file({k: v.contiguous() for k, v in outputs.items()}, str(folder / "outputs.safetensors"))


REPLACED = ("load_scene returns the driver's seeded random scene (arrays as upstream's loader yields them); "
            "video_writer captures the rgb24 bytes before encoding; condition_ready/complete_render stubbed "
            "(the completion record's extra fields captured)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("upstream", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    captured = _stub_modules()
    sys.path.insert(0, str(args.upstream))
    from pipeline import render_scene  # noqa: E402  (upstream v1.5)
    from pipeline.depth_warper import DepthWarper  # noqa: E402

    torch.set_num_threads(1)
    four = random_scene(seed=15, views=4, frames=21)  # 6 latents = 2 blocks of 3
    write_case(args.out, "v15_four_view_render", {
        "upstream": "pipeline/render_scene.py render_one (multi-image)",
        "description": "Upstream v1.5 render_one on a 4-view image scene: each view splatted into every target "
                       "(prepare_source/project_source, DepthWarper.bilinear_splatting), fused nearer-wins, "
                       "overlap pixels per latent, select_chunk_top3 per block, per-latent source frames. " + REPLACED,
        "layout": _layout() + "; outputs: render/source [F, H, W, 3] uint8 as handed to the encoder, mask [F, H, W] "
                  "uint8 0/255, source_indices [latents], overlap_pixels [latents, 4], chunk_views [blocks, 3]",
        "dtype": "float32", "tolerance": {"atol": 0.0, "rtol": 0.0},
    }, _inputs(four), run_render_one(render_scene, captured, four))  # fmt: skip

    one = random_scene(seed=16, views=1, frames=9)
    write_case(args.out, "v15_one_view_render", {
        "upstream": "pipeline/render_scene.py render_one (image)",
        "description": "Upstream v1.5 render_one on a 1-view image scene: the view splatted into every target, "
                       "the source stream is the view repeated for every frame. " + REPLACED,
        "layout": _layout() + "; outputs: render/source [F, H, W, 3] uint8, mask [F, H, W] uint8 0/255",
        "dtype": "float32", "tolerance": {"atol": 0.0, "rtol": 0.0},
    }, _inputs(one), run_render_one(render_scene, captured, one))  # fmt: skip

    pairs = [(0, 0), (0, 3), (10, 1), (10, 2), (20, 3)]
    write_case(args.out, "v15_project_source", {
        "upstream": "pipeline/render_scene.py project_source",
        "description": "Upstream v1.5 prepare_source + project_source for (frame, view) pairs of the four-view "
                       "scene of v15_four_view_render (same seed): the view lifted with its own K and pose, "
                       "projected with K of view 0, splatted with z as a fourth channel.",
        "layout": _layout() + "; outputs f<frame>_v<view>/rgb [3, H, W] float32 (clamped, 0 where unknown), "
                  "/depth [H, W] float32 splatted target z (0 where unknown), /known [H, W] bool",
        "pairs": pairs, "dtype": "float32", "tolerance": {"atol": 1e-5, "rtol": 1e-5},
    }, _inputs(four), run_project_source(render_scene, DepthWarper, four, pairs))  # fmt: skip

    rng = np.random.default_rng(17)
    scores = rng.integers(0, 4, (12, 4))  # small integers: many ties in totals and permutation sums
    scores[3:6] = 5  # one block where all views tie
    choices, chunk_views = render_scene.select_chunk_top3(scores.tolist())
    write_case(args.out, "v15_select_chunk_top3", {
        "upstream": "pipeline/render_scene.py select_chunk_top3",
        "description": "Upstream v1.5 select_chunk_top3 on tie-heavy integer overlap scores (12 latents, 4 views; "
                       "block 2 all equal).",
        "layout": "overlap_pixels [latents, 4] int64 -> choices [latents], chunk_views [blocks, 3]",
        "dtype": "int64", "tolerance": {"atol": 0.0, "rtol": 0.0},
    }, {"overlap_pixels": torch.from_numpy(scores.astype(np.int64))},
        {"choices": torch.tensor(choices), "chunk_views": torch.tensor(chunk_views)})  # fmt: skip


if __name__ == "__main__":
    main()
