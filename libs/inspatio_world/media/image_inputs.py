"""Still-image inputs of a v1.5 job: one picture, or four views of one place, checked and fitted to
the model's frame before any model work.

Accepted: exactly 1 or 4 pictures, each a PNG, JPEG or WebP file (by content, not by name), one
frame (no animations), at least `MIN_IMAGE_SIDE` pixels on each side and at most `MAX_IMAGE_PIXELS`
pixels and `MAX_IMAGE_BYTES` bytes. Anything else raises `ImageInputError` (a ValueError carrying
the request field, so the service layer answers INVALID_ARGUMENT; refusals.field_of), naming the
picture by its position. `check_image_inputs` runs the header checks only (cheap, for the front
door); `decode_image_inputs` runs them again and decodes (corrupt data is found there).

Every picture comes out upright (EXIF orientation applied, as OpenCV's imread does for upstream),
RGB (alpha dropped, as PIL's convert("RGB")), scaled with bicubic filtering to cover the frame and
centre-cropped to it -- what the community re-implementation does to each input picture (upstream
v1.5 itself only accepts pictures already 832x480; those pass unchanged). Views of different sizes
or aspect ratios are each fitted on their own, so they always come out the same size. Videos are
fitted by media/centre_crop.py instead, through FFmpeg's filters on yuv420p as upstream's video
runner does; a still picture is RGB and gets no yuv420p round trip or chroma-aligned offsets.

Layout: uint8 RGB [V, H, W, 3], V in {1, 4}, (W, H) the requested size (default 832x480).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FRAME_SIZE = (832, 480)  # (width, height) of the v1.5 model
VIEW_COUNTS = (1, 4)
FORMATS = ("PNG", "JPEG", "WEBP")
MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 8192 * 8192
MIN_IMAGE_SIDE = 16
FIELD = "images"


class ImageInputError(ValueError):
    """A picture (or the set of pictures) cannot be used; `field` is the request field it came in."""

    def __init__(self, message: str, field: str = FIELD) -> None:
        super().__init__(message)
        self.field = field


def check_image_inputs(blobs: Sequence[bytes]) -> list[tuple[int, int]]:
    """The cheap checks, from the files' headers only (count, format, size, animation): what a front
    door runs before accepting a job. Returns each picture's (width, height) as stored."""
    _check_count(blobs)
    sizes = []
    for i, blob in enumerate(blobs):
        with _header(blob, f"{FIELD}[{i}]") as image:
            sizes.append(image.size)
    return sizes


def decode_image_inputs(blobs: Sequence[bytes], size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """Encoded pictures -> uint8 RGB [V, H, W, 3] fitted to `size` (width, height); see the module docstring."""
    _check_count(blobs)
    return np.stack([fit_to_frame(_decode(blob, f"{FIELD}[{i}]"), size) for i, blob in enumerate(blobs)])


def fit_to_frame(image: Image.Image, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """Scale (bicubic) to cover `size` (width, height), then centre-crop to it -> uint8 RGB [H, W, 3]."""
    width, height = size
    scale = max(width / image.width, height / image.height)
    covered = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.convert("RGB").resize(covered, Image.Resampling.BICUBIC)
    left, top = (covered[0] - width) // 2, (covered[1] - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def _check_count(blobs: Sequence[bytes]) -> None:
    if len(blobs) not in VIEW_COUNTS:
        raise ImageInputError(f"an image job takes 1 picture or 4 views of one place, got {len(blobs)}")


def _header(blob: bytes, name: str) -> Image.Image:
    """The opened (not yet decoded) picture, its header checked."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ImageInputError(f"{name}: expected the encoded file's bytes, got {type(blob).__name__}", name)
    if len(blob) == 0:
        raise ImageInputError(f"{name}: the picture is empty", name)
    if len(blob) > MAX_IMAGE_BYTES:
        raise ImageInputError(f"{name}: {len(blob)} bytes exceed the limit of {MAX_IMAGE_BYTES} bytes", name)
    try:
        image = Image.open(io.BytesIO(bytes(blob)), formats=FORMATS)  # reads the header only
        frames = getattr(image, "n_frames", 1)
    except UnidentifiedImageError:
        raise ImageInputError(f"{name}: not a PNG, JPEG or WebP picture", name) from None
    except (OSError, SyntaxError, ValueError) as exc:  # a header cut short or corrupt
        raise ImageInputError(f"{name}: the picture's header cannot be read ({exc})", name) from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageInputError(f"{name}: {width}x{height} ({width * height} pixels) exceeds the limit of {MAX_IMAGE_PIXELS} pixels", name)
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageInputError(f"{name}: {width}x{height} is too small (each side needs at least {MIN_IMAGE_SIDE} pixels)", name)
    if frames > 1:
        raise ImageInputError(f"{name}: animated pictures are not accepted (send a video instead)", name)
    return image


def _decode(blob: bytes, name: str) -> Image.Image:
    image = _header(blob, name)
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise ImageInputError(f"{name}: the {image.format} data cannot be decoded ({exc})", name) from None
