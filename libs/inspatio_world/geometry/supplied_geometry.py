"""The object a user sends instead of letting DA3 estimate an image job's geometry: one safetensors
file with `depth` [V, H, W] (source-camera z, ~metres, 0 = unknown), `intrinsics` [V, 3, 3] or
[3, 3] (pixels of the H x W maps) and `w2c` [V, 4, 4] or [V, 3, 4] (OpenCV world-to-camera).

`encode_geometry` writes it (SDK, CLI); `decode_geometry` reads it back and checks that it holds
the three arrays, raising ImageInputError (field "geometry") otherwise. The values themselves are
checked against the pictures by geometry/image_scene.supplied_image_scene.
"""

from __future__ import annotations

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from ..media.image_inputs import ImageInputError

FIELD = "geometry"
NAMES = ("depth", "intrinsics", "w2c")


def encode_geometry(depth: np.ndarray, intrinsics: np.ndarray, w2c: np.ndarray) -> bytes:
    arrays = dict(zip(NAMES, (depth, intrinsics, w2c)))
    return save({name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()})


def decode_geometry(data: bytes) -> dict[str, np.ndarray]:
    try:
        arrays = load(data)
    except SafetensorError as exc:
        raise ImageInputError(f"the geometry object is not a safetensors file ({exc})", FIELD) from None
    missing = [name for name in NAMES if name not in arrays]
    if missing:
        raise ImageInputError(f"the geometry object lacks {', '.join(missing)} (needs depth, intrinsics and w2c)", FIELD)
    if arrays["depth"].ndim != 3:
        raise ImageInputError(f"the geometry's depth must be [views, height, width], got {list(arrays['depth'].shape)}", "depth")
    return arrays
