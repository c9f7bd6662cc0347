"""Rotation metadata (issue 11): phone videos are landscape pictures plus a display matrix; decoding
turns them upright, as a player shows them, and probing reports the displayed size.

The videos are made here with PyAV: 96x64 pictures with a bright 16x16 square in the top-left
corner, muxed with a display matrix (`set_display_rotation`, whose angle is counter-clockwise, the
way FFmpeg and `VideoFrame.rotation` read it back). A phone held upright stores -90: players turn
the picture a quarter clockwise, so the square shows in the top-right corner.
"""

from __future__ import annotations

import av
import numpy as np
import pytest

from inspatio_world.media.decode import iter_frames, probe_video, read_frames, read_images

W, H, FRAMES, SQUARE = 96, 64, 3, 16


def picture() -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    image[:SQUARE, :SQUARE] = 255
    return image


def make_video(path, rotation: int | None = None, *, hflip: bool = False, tag: str | None = None):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation, hflip=hflip)
        if tag is not None:
            stream.metadata["rotate"] = tag
        for _ in range(FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture(), format="rgb24")))
        container.mux(stream.encode())
    return path


def raw_first_frame(path) -> av.VideoFrame:
    """What PyAV itself decodes: the stored (landscape) picture, with the metadata beside it."""
    with av.open(str(path)) as container:
        return next(container.decode(container.streams.video[0]))


def bright_corner(image: np.ndarray) -> str:
    """Which corner of an [h, w, 3] image holds the square (and only that one is bright)."""
    corners = {
        "top-left": image[:SQUARE, :SQUARE], "top-right": image[:SQUARE, -SQUARE:],
        "bottom-left": image[-SQUARE:, :SQUARE], "bottom-right": image[-SQUARE:, -SQUARE:],
    }
    bright = [name for name, block in corners.items() if block.float().mean() > 200]
    dark = [name for name, block in corners.items() if block.float().mean() < 30]
    assert len(bright) == 1 and len(dark) == 3, {name: float(block.float().mean()) for name, block in corners.items()}
    return bright[0]


@pytest.mark.parametrize(
    "rotation, corner, size",
    [
        (-90, "top-right", (H, W)),  # portrait phone video: shown turned a quarter clockwise
        (90, "bottom-left", (H, W)),
        (180, "bottom-right", (W, H)),
    ],
)
def test_display_matrix_turns_frames_upright_and_probe_reports_displayed_size(tmp_path, rotation, corner, size):
    path = make_video(tmp_path / f"rot{rotation}.mp4", rotation)
    raw = raw_first_frame(path)
    assert raw.rotation % 360 == rotation % 360  # the matrix is in the file (180 reads back as -180)
    assert (raw.width, raw.height) == (W, H) and raw.side_data.get("DISPLAYMATRIX") is not None

    images = read_images(path)
    width, height = size
    assert images.shape == (FRAMES, height, width, 3)
    assert all(bright_corner(image) == corner for image in images)
    expected = np.rot90(picture(), k=rotation // 90)  # np.rot90 turns counter-clockwise, like the angle
    assert np.abs(images[0].numpy().astype(int) - expected).mean() < 4

    info = probe_video(path)
    assert (info.width, info.height, info.frames) == (width, height, FRAMES)
    assert read_frames(path).shape == (FRAMES, 3, height, width)


def test_ranges_and_chunks_are_upright_too(tmp_path):
    path = make_video(tmp_path / "portrait.mp4", -90)
    chunks = list(iter_frames(path, 1, 3, chunk_frames=1))
    assert [tuple(chunk.shape) for chunk in chunks] == [(1, W, H, 3)] * 2
    assert all(bright_corner(chunk[0]) == "top-right" for chunk in chunks)
    assert read_images(path, 2, 2).shape == (0, W, H, 3)  # an empty range keeps the displayed size


@pytest.mark.parametrize("rotation, corner, size", [(0, "top-right", (W, H)), (-90, "top-left", (H, W))])
def test_mirrored_display_matrix_is_applied(tmp_path, rotation, corner, size):
    path = make_video(tmp_path / "mirror.mp4", rotation, hflip=True)
    assert raw_first_frame(path).side_data.get("DISPLAYMATRIX") is not None
    images = read_images(path)
    assert images.shape == (FRAMES, size[1], size[0], 3) and bright_corner(images[0]) == corner
    assert (probe_video(path).width, probe_video(path).height) == size


def test_rotate_tag_of_old_files_is_honoured(tmp_path):
    """Old FFmpeg carried the rotation as a `rotate` stream tag (degrees clockwise); mkv still keeps such a tag."""
    path = make_video(tmp_path / "tagged.mkv", tag="90")
    raw = raw_first_frame(path)
    assert raw.side_data.get("DISPLAYMATRIX") is None
    with av.open(str(path)) as container:
        assert {k.lower(): v for k, v in container.streams.video[0].metadata.items()}.get("rotate") == "90"
    images = read_images(path)
    assert images.shape == (FRAMES, W, H, 3) and bright_corner(images[0]) == "top-right"
    assert (probe_video(path).width, probe_video(path).height) == (H, W)


def test_video_without_rotation_is_unchanged(tmp_path):
    path = make_video(tmp_path / "plain.mp4")
    assert raw_first_frame(path).rotation == 0
    images = read_images(path)
    assert images.shape == (FRAMES, H, W, 3) and bright_corner(images[0]) == "top-left"
    assert np.abs(images[0].numpy().astype(int) - picture()).mean() < 4
    assert (probe_video(path).width, probe_video(path).height) == (W, H)
