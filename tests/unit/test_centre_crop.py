"""v1.5's resize (media/centre_crop.py): the crop window FFmpeg's `scale=W:H:force_original_aspect_ratio=increase,
crop=W:H` picks on a yuv420p video, checked against libavfilter itself."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from inspatio_world.media.centre_crop import centre_crop, cover_size, crop_offsets


def _filtered(yuv, chain: list[tuple[str, str]]) -> np.ndarray:
    import av

    graph = av.filter.Graph()
    nodes = [graph.add_buffer(width=yuv.width, height=yuv.height, format="yuv420p", time_base=Fraction(1, 25))]
    nodes += [graph.add(name, args) for name, args in chain] + [graph.add("buffersink")]
    for a, b in zip(nodes, nodes[1:]):
        a.link_to(b)
    graph.configure()
    yuv.pts = 0
    graph.push(yuv)
    return graph.pull().to_ndarray(format="rgb24")


@pytest.mark.parametrize("width, height", [(192, 90), (100, 100), (64, 200), (150, 41), (131, 77), (66, 41), (300, 37)])
@pytest.mark.parametrize("out_w, out_h", [(64, 40), (56, 32), (30, 30)])
def test_the_crop_window_is_ffmpegs(width, height, out_w, out_h):
    import av

    image = np.random.default_rng(width * height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    yuv = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    upstream = _filtered(yuv, [("scale", f"{out_w}:{out_h}:force_original_aspect_ratio=increase"), ("crop", f"{out_w}:{out_h}")])
    scaled_w, scaled_h = cover_size(width, height, out_w, out_h)
    x, y = crop_offsets(scaled_w, scaled_h, out_w, out_h)
    ours = _filtered(yuv, [("scale", f"{scaled_w}:{scaled_h}:flags=bicubic"), ("crop", f"{out_w}:{out_h}:{x}:{y}")])
    assert np.array_equal(ours, upstream)


def test_cover_size_and_offsets_by_hand():
    assert cover_size(1920, 900, 832, 480) == (1024, 480)  # 1920 * 480 / 900 = 1024
    assert crop_offsets(1024, 480, 832, 480) == (96, 0)
    assert cover_size(1352, 760, 832, 480) == (854, 480)  # 853.9 rounds to 854
    assert crop_offsets(854, 480, 832, 480) == (10, 0)  # 11 aligned down to even
    assert cover_size(480, 832, 832, 480) == (832, 1442)  # portrait: cropped top and bottom
    with pytest.raises(ValueError):
        cover_size(0, 10, 832, 480)


def test_frames_of_the_output_size_are_kept_as_they_are():
    images = torch.randint(0, 256, (2, 32, 56, 3), dtype=torch.uint8)
    assert centre_crop(images, (56, 32)) is images
    assert centre_crop(torch.randint(0, 256, (3, 90, 192, 3), dtype=torch.uint8), (64, 40)).shape == (3, 40, 64, 3)
