"""Image inputs of a v1.5 job: count, format, size checks (ImageInputError) and the cover-and-crop fit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inspatio_world.media import image_inputs
from inspatio_world.media.image_inputs import ImageInputError, check_image_inputs, decode_image_inputs, fit_to_frame
from inspatio_world.refusals import field_of

SIZE = (32, 16)  # (width, height), small for speed


def _encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _bands(width: int, height: int) -> np.ndarray:
    """Left third red, middle green, right third blue."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 3, 0] = 255
    image[:, width // 3 : 2 * width // 3, 1] = 255
    image[:, 2 * width // 3 :, 2] = 255
    return image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_each_accepted_format_decodes_to_the_frame(fmt):
    views = decode_image_inputs([_encode(_bands(64, 32), fmt)], SIZE)
    assert views.shape == (1, 16, 32, 3) and views.dtype == np.uint8
    assert views[0, 8, 16, 1] > 200  # the middle is green


def test_four_views_of_different_sizes_all_come_out_the_same_size():
    blobs = [_encode(_bands(w, h), "PNG") for w, h in ((64, 32), (40, 40), (100, 20), (20, 50))]
    assert decode_image_inputs(blobs, SIZE).shape == (4, 16, 32, 3)


def test_a_wider_picture_is_cropped_at_both_sides_not_squeezed():
    wide = _bands(96, 16)  # three times the frame's aspect: the crop keeps the middle band only
    fitted = fit_to_frame(Image.fromarray(wide), SIZE)
    assert fitted.shape == (16, 32, 3)
    assert (fitted[:, 2:-2, 1] > 200).all() and (fitted[:, 2:-2, [0, 2]] < 50).all()


def test_a_taller_picture_is_scaled_to_cover_then_cropped_top_and_bottom():
    tall = np.zeros((64, 16, 3), np.uint8)
    tall[:16] = 255  # a white top quarter falls outside the centre crop
    fitted = fit_to_frame(Image.fromarray(tall), SIZE)
    assert fitted.shape == (16, 32, 3) and fitted.max() < 50


def test_exif_orientation_is_applied():
    image = Image.fromarray(_bands(64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    upright = decode_image_inputs([buffer.getvalue()], (32, 64))[0]  # the displayed picture is portrait
    assert upright[2, 16, 0] > 200 and upright[-3, 16, 2] > 200  # red on top, blue at the bottom


@pytest.mark.parametrize("count", [0, 2, 3, 5])
def test_only_one_or_four_pictures(count):
    blob = _encode(_bands(32, 16), "PNG")
    with pytest.raises(ImageInputError, match=f"1 picture or 4 views of one place, got {count}") as error:
        decode_image_inputs([blob] * count, SIZE)
    assert field_of(error.value) == "images"


def _problem(blobs) -> ImageInputError:
    with pytest.raises(ImageInputError) as error:
        decode_image_inputs(blobs, SIZE)
    return error.value


def test_unsupported_or_broken_files_name_the_picture():
    good = _encode(_bands(32, 16), "PNG")
    gif = _encode(_bands(32, 16), "GIF")
    error = _problem([good, good, gif, good])
    assert "images[2]: not a PNG, JPEG or WebP" in str(error) and field_of(error) == "images[2]"
    assert "not a PNG, JPEG or WebP" in str(_problem([b"hello, not a picture"]))
    assert "empty" in str(_problem([b""]))
    assert "cannot be decoded" in str(_problem([good[: len(good) // 2]]))
    jpeg = _encode(_bands(64, 32), "JPEG")
    assert "cannot be" in str(_problem([jpeg[: len(jpeg) // 2]]))
    assert "expected the encoded file's bytes" in str(_problem(["picture.png"]))


def test_sizes_are_checked_before_decoding(monkeypatch):
    assert "too small" in str(_problem([_encode(_bands(32, 8), "PNG")]))
    monkeypatch.setattr(image_inputs, "MAX_IMAGE_PIXELS", 1000)
    assert "exceeds the limit of 1000 pixels" in str(_problem([_encode(_bands(64, 32), "PNG")]))
    monkeypatch.setattr(image_inputs, "MAX_IMAGE_BYTES", 10)
    assert "exceed the limit of 10 bytes" in str(_problem([_encode(_bands(32, 16), "PNG")]))


def test_animations_are_refused():
    frames = [Image.fromarray(_bands(32, 16)), Image.fromarray(255 - _bands(32, 16))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="WEBP", save_all=True, append_images=frames[1:])
    assert "animated" in str(_problem([buffer.getvalue()]))


def test_the_cheap_check_reads_headers_only():
    good = _encode(_bands(64, 32), "PNG")
    assert check_image_inputs([good] * 4) == [(64, 32)] * 4
    truncated = good[: len(good) // 2]
    assert check_image_inputs([truncated]) == [(64, 32)]  # only decoding finds this out
    with pytest.raises(ImageInputError, match="cannot be decoded"):
        decode_image_inputs([truncated], SIZE)
    with pytest.raises(ImageInputError, match="got 2"):
        check_image_inputs([good] * 2)
    with pytest.raises(ImageInputError, match="not a PNG, JPEG or WebP"):
        check_image_inputs([b"GIF89a...."])


def test_a_picture_already_at_the_frame_size_passes_unchanged():
    """Upstream v1.5 takes 832x480 PNGs as they are: such inputs keep their exact pixels here."""
    picture = np.random.default_rng(3).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    assert np.array_equal(decode_image_inputs([_encode(picture, "PNG")], SIZE)[0], picture)
