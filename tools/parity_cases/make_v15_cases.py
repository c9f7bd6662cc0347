"""Write v1.5 conditioning parity cases by running upstream v1.5's own functions, in the pack format.

    python tools/parity_cases/make_v15_cases.py UPSTREAM_V15_CHECKOUT tests/parity/v1_5

UPSTREAM_V15_CHECKOUT holds inspatio/inspatio-world-v1.5's `pipeline/depth_warper.py`,
`pipeline/render_scene.py`, `pipeline/scene_schema.py`, `datasets/utils.py` and
`datasets/scene_depth_io.py`; they are imported from there and do all the computing on small seeded
random inputs (CPU, float32):

* v15_render_per_frame: render_scene.prepare_source + project_source (DepthWarper.bilinear_splatting)
  per frame, each frame with its own K and w2c, target K = frame 0's, then render_one's hole fill
  (-1) and 8-bit conversion;
* v15_depth_uint16: the depth a video renders from: range_from_float_depths over RGBA float PNGs,
  write_range / read_range (metadata.txt), encode_depth, encode_video_frame, decode_video_depth_frame;
* v15_frame_padding: scene_schema.padded_frame_count, and datasets/utils.iter_video_chunks over a
  lossless (FFV1) video whose frame k holds the value 8k, so the frames it yields are indices;
* v15_centre_crop: the filters upstream's run_scene_inference.py asks ffmpeg for
  (`scale=W:H:force_original_aspect_ratio=increase,crop=W:H`), run by libavfilter through PyAV on
  yuv420p frames (as in a decoded H.264 video), before upstream's libx264 re-encode.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

SEED = 15


def _case(out: Path, name: str, meta: dict, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> None:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    described = {key: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for key, v in inputs.items()}
    produced = {key: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for key, v in outputs.items()}
    meta = {"case": name, **meta, "torch": torch.__version__, "inputs": described, "outputs": produced}
    (folder / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in inputs.items()}, str(folder / "inputs.safetensors"))
    save_file({k: v.contiguous() for k, v in outputs.items()}, str(folder / "outputs.safetensors"))


def _rotation(rng: np.random.Generator, degrees: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _w2c(rng: np.random.Generator, degrees: float, shift: float) -> np.ndarray:
    w2c = np.eye(4)
    w2c[:3, :3] = _rotation(rng, degrees)
    w2c[:3, 3] = rng.normal(size=3) * shift
    return w2c.astype(np.float32)


def render_per_frame_case(out: Path) -> None:
    from pipeline.depth_warper import DepthWarper
    from pipeline.render_scene import prepare_source, project_source

    rng = np.random.default_rng(SEED)
    n, h, w = 4, 24, 40
    frames = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 4.0, (n, h, w)).astype(np.float32)
    depth[1, :, :5] = 0.0  # no depth: never splats
    depth[2, 3:6, 10:20] = 1500.0  # past the soft z-buffer's saturation (1000)
    source_k = np.stack([np.array([[f, 0, w / 2 + dx], [0, f * 0.95, h / 2 + dy], [0, 0, 1]], dtype=np.float32)
                         for f, dx, dy in ((30, 0, 0), (36, 1.5, -0.5), (26, -2, 1), (33, 0.25, 0.75))])  # fmt: skip
    source_tcw = np.stack([np.eye(4, dtype=np.float32)] + [_w2c(rng, 3.0, 0.05) for _ in range(n - 1)])
    target_tcw = np.stack([_w2c(rng, 4.0, 0.1) for _ in range(n)])
    target_tcw[3] = np.diag([-1.0, 1.0, -1.0, 1.0]).astype(np.float32) @ target_tcw[3]  # turned around: most z < 0
    warper, device = DepthWarper(), torch.device("cpu")
    target_k = torch.from_numpy(source_k[0].copy())[None]
    renders, masks, depths, pixels = [], [], [], []
    for i in range(n):
        prepared = prepare_source(warper, frames[i], depth[i], source_tcw[i], source_k[i], device)
        rgb, distance, known = project_source(warper, prepared, torch.from_numpy(target_tcw[i : i + 1].copy()), target_k)
        fused = torch.where(known[None], rgb, -torch.ones_like(rgb))  # render_one, one view
        renders.append(fused)
        masks.append(known)
        depths.append(torch.where(known, distance, torch.zeros_like(distance)))
        pixels.append(torch.from_numpy(((fused.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)))
    inputs = {"frames_rgb_uint8": torch.from_numpy(frames), "depth": torch.from_numpy(depth), "source_K": torch.from_numpy(source_k),
              "source_w2c": torch.from_numpy(source_tcw), "target_w2c": torch.from_numpy(target_tcw)}  # fmt: skip
    outputs = {"render": torch.stack(renders), "mask": torch.stack(masks), "depth": torch.stack(depths),
               "render_uint8": torch.stack(pixels)}  # fmt: skip
    _case(out, "v15_render_per_frame", {
        "upstream": "v1.5 pipeline/render_scene.py prepare_source + project_source (pipeline/depth_warper.py DepthWarper)",
        "description": "Each video frame i unprojected with its own K_i and w2c_i (no depth clip), moved into target w2c_i, "
                       "projected with K_0 (u = x / z.clamp_min(1e-6)), splatted with valid = depth > 0 and z > 0 and the "
                       "soft z-buffer scaled by that frame's own max log(1 + z); holes filled with -1 as render_one does "
                       "for one view; render_uint8 as render_one writes it. depth: the splatted target z, 0 in holes.",
        "layout": "frames_rgb_uint8 NHWC; depth NHW; source_K N33; source_w2c, target_w2c N44 (float32, as upstream reads "
                  "the txt files); render NCHW [-1, 1]; mask NHW bool; depth NHW; render_uint8 NHWC",
        "dtype": "float32",
        "tolerance": {"render": {"atol": 1e-5, "rtol": 1e-5}, "depth": {"atol": 1e-5, "rtol": 1e-5}},
    }, inputs, outputs)  # fmt: skip


def depth_uint16_case(out: Path) -> None:
    from PIL import Image

    from datasets.scene_depth_io import (decode_video_depth_frame, encode_depth, encode_video_frame, range_from_float_depths,
                                         read_range, write_range)  # fmt: skip

    rng = np.random.default_rng(SEED + 1)
    n, h, w = 3, 16, 24
    depth = (rng.uniform(0.1, 1.0, (n, h, w)) ** 2 * 37.3).astype(np.float32)
    decoded = []
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(n):  # depth_estimation.py's save_depth_rgba_float: the float32 bytes as RGBA
            path = Path(folder) / f"{i:04d}.png"
            Image.fromarray(np.frombuffer(depth[i].tobytes(), dtype=np.uint8).reshape(h, w, 4), "RGBA").save(path)
            paths.append(path)
        minimum, maximum = range_from_float_depths(paths, h, w)
        write_range(Path(folder) / "metadata.txt", minimum, maximum)
        stored = read_range(Path(folder) / "metadata.txt")
        for i in range(n):
            rgb = encode_video_frame(encode_depth(depth[i], minimum, maximum))  # libx264rgb crf 0: lossless
            decoded.append(decode_video_depth_frame(rgb[..., ::-1].copy(), *stored))  # OpenCV reads BGR
    _case(out, "v15_depth_uint16", {
        "upstream": "v1.5 datasets/scene_depth_io.py range_from_float_depths, write_range/read_range, encode_depth, "
                    "encode_video_frame, decode_video_depth_frame",
        "description": "The depth upstream v1.5 renders a video from: float DA3 depth quantised linearly to uint16 between "
                       "the video's min and max, decoded with the min/max read back from metadata.txt (%.9g).",
        "layout": "depth NHW float32 (DA3 output at render size); decoded NHW float32",
        "dtype": "float32",
        "tolerance": {"atol": 0.0, "rtol": 0.0},
    }, {"depth": torch.from_numpy(depth)}, {"decoded": torch.from_numpy(np.stack(decoded))})  # fmt: skip


def frame_padding_case(out: Path) -> None:
    import av

    from datasets.utils import iter_video_chunks
    from pipeline.scene_schema import padded_frame_count

    counts = list(range(1, 41)) + [121, 247, 1000]
    outputs = {"padded_frame_count": torch.tensor([padded_frame_count(n) for n in counts], dtype=torch.int64)}
    h, w = 16, 16
    with tempfile.TemporaryDirectory() as folder:
        for valid in (1, 9, 10, 13, 22):
            path = Path(folder) / f"index_{valid}.mkv"
            with av.open(str(path), "w") as container:  # frame k is the grey value 8k, losslessly
                stream = container.add_stream("ffv1", rate=Fraction(25))
                stream.width, stream.height, stream.pix_fmt = w, h, "bgr0"
                for k in range(valid):
                    image = np.full((h, w, 3), 8 * k, dtype=np.uint8)
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="bgr0")))
                container.mux(stream.encode())
            chunks = list(iter_video_chunks(path, valid, padded_frame_count(valid), video_size=(h, w)))
            indices = torch.cat([chunk[:, 0, 0, 0] for chunk in chunks]).to(torch.int64) // 8
            outputs[f"frame_index/{valid}"] = indices
            outputs[f"chunk_sizes/{valid}"] = torch.tensor([len(chunk) for chunk in chunks], dtype=torch.int64)
    _case(out, "v15_frame_padding", {
        "upstream": "v1.5 pipeline/scene_schema.py padded_frame_count; datasets/utils.py iter_video_chunks",
        "description": "Frames to whole 3-latent blocks (1 + 4(L - 1), L rounded up to a multiple of 3), and the frame "
                       "each padded position shows (the last valid one repeated), over index-coded lossless videos.",
        "counts": counts,
        "layout": "padded_frame_count[i] for counts[i]; frame_index/<valid>: source frame per padded position; "
                  "chunk_sizes/<valid>: 1, then 4 per chunk",
        "dtype": "int64",
        "tolerance": {"atol": 0.0, "rtol": 0.0},
    }, {"counts": torch.tensor(counts, dtype=torch.int64)}, outputs)  # fmt: skip


def _smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Random low-frequency RGB content (photographs are smooth; chroma subsampling of noise is not a test of geometry)."""
    coarse = torch.from_numpy(rng.uniform(0, 255, (1, 3, max(2, h // 6), max(2, w // 6))).astype(np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    return fine[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


def centre_crop_case(out: Path) -> None:
    import av

    rng = np.random.default_rng(SEED + 2)
    size = (56, 32)  # (W, H): 832x480 scaled down, same use of the filters
    inputs, outputs = {}, {}
    for width, height in ((150, 62), (80, 96), (57, 41), (56, 32), (201, 33)):
        image = _smooth_image(rng, height, width)
        yuv = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")  # as in an H.264 video
        graph = av.filter.Graph()
        chain = [graph.add_buffer(width=width, height=height, format="yuv420p", time_base=Fraction(1, 25)),
                 graph.add("scale", f"{size[0]}:{size[1]}:force_original_aspect_ratio=increase"),
                 graph.add("crop", f"{size[0]}:{size[1]}"), graph.add("buffersink")]  # fmt: skip
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        yuv.pts = 0
        graph.push(yuv)
        key = f"{width}x{height}"
        inputs[key] = torch.from_numpy(yuv.to_ndarray(format="rgb24"))  # what a decoder hands over
        outputs[key] = torch.from_numpy(graph.pull().to_ndarray(format="rgb24").astype(np.float32))
    _case(out, "v15_centre_crop", {
        "upstream": "v1.5 run_scene_inference.py materialize_direct_video: ffmpeg -vf "
                    "scale=W:H:force_original_aspect_ratio=increase,crop=W:H (libavfilter via PyAV " + av.__version__ + ")",
        "description": "Scale to cover W x H keeping the aspect ratio, crop the centre, on yuv420p frames of random smooth "
                       "images; inputs are those frames converted to RGB (what a decoder gives), outputs the filtered "
                       "frames in RGB before upstream's libx264 re-encode. Stored as float32 0..255.",
        "size": list(size),
        "layout": "inputs <W>x<H>: HWC uint8; outputs: HWC float32 (uint8 values)",
        "dtype": "float32",
        "tolerance": {"atol": 24.0, "rtol": 0.0},
    }, inputs, outputs)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path, help="inspatio-world-v1.5 checkout (or the files listed above)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(args.upstream.resolve()))
    importlib.invalidate_caches()
    torch.use_deterministic_algorithms(True)
    for make in (render_per_frame_case, depth_uint16_case, frame_padding_case, centre_crop_case):
        make(args.out)
        print(f"wrote {make.__name__}", flush=True)


if __name__ == "__main__":
    main()
