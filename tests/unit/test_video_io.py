"""Video decode/encode: H.264 and lossless round trips, other codecs, dataset value handling, bad input."""

from __future__ import annotations

import re
import struct

import av
import numpy as np
import pytest
import torch

from inspatio_world.media.dataset_inputs import load_render_and_mask, load_source_video
from inspatio_world.media.decode import DecodeLimits, VideoError, iter_frames, probe_video, read_images
from inspatio_world.media.lossless import write_lossless, read_lossless_masks
from inspatio_world.media.video_io import Mp4Writer, read_frames, to_uint8, write_mp4

T, H, W = 5, 48, 64


def smooth_images(t: int = T, h: int = H, w: int = W) -> torch.Tensor:
    """uint8 [t, h, w, 3] gradients that move per frame: easy for a lossy codec to keep close."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frames = [torch.stack([(x * 3 + 9 * k) % 256, (y * 4 + 5 * k) % 256, (x + y + 20 * k) % 256], -1) for k in range(t)]
    return torch.stack(frames).to(torch.uint8)


def encode_with_pyav(path, codec: str, images: torch.Tensor, options: dict[str, str] | None = None) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = images.shape[2], images.shape[1], "yuv420p"
        stream.options = options or {}
        for image in images.numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def h264_mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    write_mp4(path, [smooth_images().permute(0, 3, 1, 2).float() / 255.0], W, H)
    return path


# ---------------------------------------------------------------- encode / decode


def test_h264_round_trip_keeps_count_size_and_pixels(h264_mp4):
    original = smooth_images().permute(0, 3, 1, 2).float() / 255.0
    decoded = read_frames(h264_mp4)
    assert decoded.shape == (T, 3, H, W) and decoded.dtype == torch.float32
    error = (decoded - original).abs()
    assert error.mean() < 4 / 255 and error.max() < 0.25  # yuv420p + crf 23 is lossy, but close


def test_probe_reports_container_facts(h264_mp4):
    info = probe_video(h264_mp4)
    assert (info.frames, info.fps, info.width, info.height, info.codec) == (T, 24.0, W, H, "h264")
    assert info.duration == pytest.approx(T / 24, abs=0.05)


def test_to_uint8_truncates_like_upstream():
    values = torch.tensor([0.999, 0.5, 1.2, -0.1, 1 / 255]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_uint8(values)[0, 0, :, 0].tolist() == [254, 127, 255, 0, 1]


def test_mp4_writer_refuses_odd_sizes_and_mismatched_images(tmp_path):
    with pytest.raises(ValueError, match="even width and height"):
        Mp4Writer(tmp_path / "odd.mp4", 63, 48)
    with Mp4Writer(tmp_path / "ok.mp4", W, H, crf=18) as writer:
        with pytest.raises(ValueError, match=r"expected uint8 images \[T, 48, 64, 3\]"):
            writer.write_images(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))
        writer.write_images(smooth_images(2))
    assert probe_video(tmp_path / "ok.mp4").frames == 2


@pytest.mark.parametrize(
    "name, encoder, codec, options",
    [
        ("clip.mov", "libx264", "h264", {}),
        ("clip.mkv", "libx265", "hevc", {"x265-params": "log-level=error"}),
        ("clip.webm", "libvpx-vp9", "vp9", {}),
        ("clip.mkv", "libsvtav1", "av1", {}),
    ],
)
def test_decodes_other_containers_and_codecs(tmp_path, name, encoder, codec, options):
    if encoder not in av.codecs_available:
        pytest.skip(f"this PyAV build has no {encoder} encoder")
    images = smooth_images()
    encode_with_pyav(tmp_path / name, encoder, images, options)
    info = probe_video(tmp_path / name)
    assert (info.codec, info.frames, info.width, info.height) == (codec, T, W, H)
    decoded = read_images(tmp_path / name)
    assert decoded.shape == (T, H, W, 3)
    assert (decoded.float() - images.float()).abs().mean() < 6


def test_lossless_rgb_round_trip_is_bit_exact(tmp_path):
    images = torch.randint(0, 256, (T, 37, 50, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    assert write_lossless(tmp_path / "frames.mkv", [images[:2], images[2:]], 50, 37) == T
    assert probe_video(tmp_path / "frames.mkv").codec == "ffv1"
    assert torch.equal(read_images(tmp_path / "frames.mkv"), images)


def test_lossless_mask_round_trip_is_bit_exact(tmp_path):
    masks = torch.rand(T, H, W, generator=torch.Generator().manual_seed(1)) > 0.5
    write_lossless(tmp_path / "mask.mkv", [masks], W, H, kind="mask")
    assert torch.equal(read_lossless_masks(tmp_path / "mask.mkv"), masks)
    with pytest.raises(ValueError, match="expected bool masks"):
        write_lossless(tmp_path / "bad.mkv", [masks.float()], W, H, kind="mask")


def test_frame_ranges_and_chunks_match_the_full_decode(tmp_path):
    images = smooth_images()
    write_lossless(tmp_path / "frames.mkv", [images], W, H)
    assert torch.equal(read_images(tmp_path / "frames.mkv", 2, 4), images[2:4])
    assert [len(chunk) for chunk in iter_frames(tmp_path / "frames.mkv", 1, chunk_frames=2)] == [2, 2]
    assert read_images(tmp_path / "frames.mkv", 7, 9).shape == (0, H, W, 3)


# ---------------------------------------------------------------- dataset value handling


def test_source_is_capped_resized_and_normalised(tmp_path):
    images = smooth_images()
    write_lossless(tmp_path / "src.mkv", [images], W, H)
    full = load_source_video(tmp_path / "src.mkv")
    assert full.shape == (T, 3, 480, 832) and full.dtype == torch.float32
    assert full.min() >= -1 and full.max() <= 1
    # at the target size nothing is resampled: exactly x / 255 mapped to [-1, 1]
    same = load_source_video(tmp_path / "src.mkv", max_frames=3, size=(H, W))
    assert torch.equal(same, (images[:3].permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5)


def test_source_downscale_is_antialiased_bilinear(tmp_path):
    # Columns 255, 0, 0 repeating, shrunk 3x in width: the antialiased triangle filter (taps 1/3, 2/9,
    # 2/9, 1/9, 1/9 around each output centre) gives 255/3 everywhere inside; plain bilinear would
    # sample only the 0 columns.
    stripes = torch.zeros(1, 16, 96, 3, dtype=torch.uint8)
    stripes[:, :, 0::3] = 255
    write_lossless(tmp_path / "stripes.mkv", [stripes], 96, 16)
    out = load_source_video(tmp_path / "stripes.mkv", size=(16, 32))
    assert torch.allclose(out[..., 1:-1], torch.full_like(out[..., 1:-1], 2 * (1 / 3) - 1), atol=1e-6)


def test_render_to_unit_range_and_mask_binarised_at_half(tmp_path):
    levels = torch.tensor([0, 127, 128, 255], dtype=torch.uint8)
    images = levels.repeat_interleave(16).view(1, 1, W, 1).expand(2, H, W, 3).contiguous()
    write_lossless(tmp_path / "render.mkv", [images], W, H)
    render, mask = load_render_and_mask(tmp_path / "render.mkv", tmp_path / "render.mkv")
    assert render.shape == mask.shape == (2, 3, H, W)
    assert torch.allclose(render[0, 0, 0, ::16], levels.float() / 255 * 2 - 1)
    assert mask[0, 0, 0, ::16].tolist() == [-1.0, -1.0, 1.0, 1.0]  # 127/255 < 0.5 < 128/255


# ---------------------------------------------------------------- bad input


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _no_decodable_frames(path):
    """An H.264 stream whose packets hold only access-unit delimiters: a valid file with no pictures."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        container.start_encoding()
        for i in range(3):
            packet = av.Packet(b"\x00\x00\x00\x02\x09\xf0")
            packet.stream, packet.pts, packet.dts = stream, i, i
            container.mux(packet)


def _corrupt_payload(path, valid_mp4):
    """The valid mp4 with every byte of its mdat box payload scrambled."""
    data = bytearray(valid_mp4.read_bytes())
    start = data.index(b"mdat") - 4
    (size,) = struct.unpack(">I", data[start : start + 4])
    for i in range(start + 8, start + size):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))


def _unknown_codec(path):
    """A valid FFV1 mkv whose Matroska codec id is renamed to one FFmpeg does not know."""
    write_lossless(path, [smooth_images(2)], W, H)
    path.write_bytes(path.read_bytes().replace(b"V_FFV1", b"V_QUUX"))


BAD_INPUTS = {
    "empty.mp4": (lambda p, ok: p.write_bytes(b""), "file is empty"),
    "notes.mp4": (lambda p, ok: p.write_text("just some text, not a video\n" * 20), "opening the container failed"),
    "noise.mp4": (lambda p, ok: p.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))), "opening the container failed"),
    "truncated.mp4": (lambda p, ok: p.write_bytes(ok.read_bytes()[: ok.stat().st_size // 2]), "opening the container failed"),
    "corrupt.mp4": (_corrupt_payload, "decoding failed|no decodable frames"),
    "speech.m4a": (lambda p, ok: _audio_only(p), r"no video stream \(streams found: audio\)"),
    "blank.mkv": (lambda p, ok: _no_decodable_frames(p), "no decodable frames"),
    "alien.mkv": (lambda p, ok: _unknown_codec(p), "unsupported codec"),
    "missing.mp4": (lambda p, ok: None, "no such file"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_video_error_naming_file_and_problem(tmp_path, h264_mp4, name):
    make, problem = BAD_INPUTS[name]
    path = tmp_path / name
    make(path, h264_mp4)
    with pytest.raises(VideoError) as caught:
        read_frames(path)
    assert name in str(caught.value) and re.search(problem, str(caught.value))
    assert isinstance(caught.value, ValueError) and caught.value.path == path


def test_limits_refuse_large_videos_before_decoding(h264_mp4):
    with pytest.raises(VideoError, match=r"64x48 frames \(3072 pixels\) exceed the limit of 3000"):
        iter_frames(h264_mp4, limits=DecodeLimits(max_pixels=3000))
    with pytest.raises(VideoError, match=f"{T} frames exceed the limit of 4 frames"):
        load_source_video(h264_mp4, limits=DecodeLimits(max_frames=4))
