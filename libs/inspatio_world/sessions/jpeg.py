"""JPEG frames for a live session's blocks.

Encoder: OpenCV's (cv2.imencode, libjpeg-turbo inside the opencv wheel), already a dependency of the
depth stage (stages/depth.py writes upstream's quality-95 frames with it); Pillow is present only as a
transformers extra and torchvision is not a dependency, so cv2 adds nothing to install.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def encode_jpegs(images: torch.Tensor, quality: int) -> list[bytes]:
    """uint8 [F, H, W, 3] RGB frames -> one JPEG (baseline, 4:2:0) each."""
    out = []
    for image in images.cpu().numpy():
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, int(quality)])  # fmt: skip
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        out.append(data.tobytes())
    return out


def decode_jpeg(data: bytes) -> np.ndarray:
    """A JPEG -> uint8 [H, W, 3] RGB (tests, viewers)."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a JPEG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
