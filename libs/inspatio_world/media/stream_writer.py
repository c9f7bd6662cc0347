"""The PyAV mechanics shared by the video writers: one video stream, frames appended, packets muxed."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class StreamWriter:
    """Opens `path` with one `codec` stream of `pix_fmt`; subclasses turn chunks into uint8 arrays."""

    def __init__(self, path: str | Path, width: int, height: int, codec: str, pix_fmt: str, fps: int,
                 container_format: str | None = None, options: dict[str, str] | None = None,
                 container_options: dict[str, str] | None = None) -> None:  # fmt: skip
        import av

        self.path = Path(path)
        self.width, self.height = width, height
        self._container = av.open(str(self.path), mode="w", format=container_format, options=container_options)
        self._stream = self._container.add_stream(codec, rate=fps)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, pix_fmt
        if options:
            self._stream.options = options
        self.frames_written = 0

    def _encode(self, images: np.ndarray, input_format: str) -> None:
        """Append each image of a [t, H, W(, C)] uint8 array given in `input_format` (rgb24, gray)."""
        import av

        for image in images:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(image, format=input_format)):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
