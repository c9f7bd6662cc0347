"""Small pictures for image-job tests: PNG bytes of smooth random content."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (max(2, height // 8), max(2, width // 8), 3)).astype(np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
