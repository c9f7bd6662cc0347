"""The check an image job's own geometry object gets at the door, before anything is stored: it decodes
(geometry/supplied_geometry.decode_geometry), has one depth map per picture, and its depth,
intrinsics and poses pass the very checks the render applies (geometry/image_scene.supplied_image_scene,
run here on blank pictures of the depth maps' size). ImageInputError (INVALID_ARGUMENT) otherwise."""

from __future__ import annotations

import numpy as np

from ..geometry.image_scene import supplied_image_scene
from ..geometry.supplied_geometry import FIELD, decode_geometry
from .image_inputs import ImageInputError


def check_geometry(data: bytes, views: int) -> None:
    arrays = decode_geometry(data)
    count, height, width = arrays["depth"].shape
    if count != views:
        raise ImageInputError(f"the geometry holds {count} depth maps for {views} pictures: give one per picture", FIELD)
    supplied_image_scene(np.zeros((views, height, width, 3), np.uint8), arrays["depth"], arrays["intrinsics"], arrays["w2c"])
