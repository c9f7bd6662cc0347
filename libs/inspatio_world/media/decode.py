"""Decoding videos with PyAV into RGB frames, with every failure reported as a `VideoError`.

Layouts: 8-bit data is channel-last, as decoders hand it out: uint8 images [T, H, W, 3] (RGB).
Float data is channel-first, as upstream's `read_frames` returns it: frames [T, 3, H, W] in [0, 1]
(= uint8 / 255).

Any container and codec the bundled FFmpeg can decode works (mp4/mov/mkv/webm with H.264, H.265,
VP9, AV1 via dav1d, FFV1, ...). Before decoding, the container's declared size and frame count are
checked against `DecodeLimits`, so a huge file is refused having decoded at most its first frame
(probing decodes it to read the orientation). Frames can be decoded as a range and in chunks so a
long video is never held whole at full resolution.

Frames come out upright, as a player shows them: phones store portrait video as landscape pictures
plus a display matrix (FFmpeg hands it to every decoded frame as DISPLAYMATRIX side data; files
remuxed by old FFmpeg may carry a `rotate` stream tag instead). Quarter turns and mirrorings are
applied; any other angle is left alone. `probe_video` reports the displayed size.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

class VideoError(ValueError):
    """A video file cannot be used; the message names the file and the problem. `field`: the request
    field that named the video, where the caller knows (refusals.field_of)."""

    def __init__(self, path: str | Path, problem: str, field: str = "") -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem
        self.field = field


@dataclass(frozen=True)
class DecodeLimits:
    """Refuse files beyond these sizes before decoding anything (defaults: 8K frames, ~1 h at 30 fps)."""

    max_pixels: int = 7680 * 4320
    max_frames: int = 100_000

    def check(self, path: str | Path, info: "VideoInfo") -> None:
        pixels = info.width * info.height
        if pixels > self.max_pixels:
            raise VideoError(path, f"{info.width}x{info.height} frames ({pixels} pixels) exceed the limit of {self.max_pixels} pixels per frame")
        if info.frames > self.max_frames:
            raise VideoError(path, f"{info.frames} frames exceed the limit of {self.max_frames} frames")


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream.

    `frames` is the container's own count (mp4/mov store it); where it doesn't (mkv/webm) the video
    packets are counted, which reads the file but decodes nothing. `duration` is in seconds.
    """

    frames: int
    fps: float
    width: int
    height: int
    codec: str
    duration: float


@dataclass(frozen=True)
class _Orientation:
    """How to turn a decoded [H, W, 3] picture upright: transpose first, then flip rows and/or columns."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False


_UPRIGHT = _Orientation()


def _orientation(frame: "VideoFrame", stream: "VideoStream") -> _Orientation:
    """The orientation of `frame` from its display matrix, else from the stream's `rotate` tag (degrees clockwise).

    FFmpeg's matrix [a b u; c d v; x y w] maps a stored pixel (col p, row q) to the shown one
    (a*p + c*q, b*p + d*q) (plus a shift); only the signs of a, b, c, d matter for quarter turns.
    """
    side = frame.side_data.get("DISPLAYMATRIX")
    if side is not None:
        m = np.frombuffer(bytes(side), dtype=np.int32)[[0, 1, 3, 4]].astype(np.float64)
        a, b, c, d = np.where(np.abs(m) > np.abs(m).max() / 2, np.sign(m), 0)  # at 45 degrees all four stay: left alone
    else:
        tag = next((value for key, value in stream.metadata.items() if key.lower() == "rotate"), "0")
        try:
            degrees = float(tag)
        except ValueError:
            degrees = 0.0
        turn = int(degrees // 90) % 4 if degrees % 90 == 0 else 0
        a, b, c, d = [(1, 0, 0, 1), (0, 1, -1, 0), (-1, 0, 0, -1), (0, -1, 1, 0)][turn]  # cos, sin, -sin, cos
    if b == c == 0 and a and d:
        return _Orientation(False, bool(d < 0), bool(a < 0))
    if a == d == 0 and b and c:  # a quarter turn: stored columns become shown rows
        return _Orientation(True, bool(b < 0), bool(c < 0))
    return _UPRIGHT  # no matrix, or an angle that is not a multiple of 90 degrees


def _upright(image: np.ndarray, orientation: _Orientation) -> np.ndarray:
    """A decoded [H, W, 3] image as it is displayed (a view; [W, H, 3] after a quarter turn)."""
    if orientation.transpose:
        image = image.transpose(1, 0, 2)
    return image[:: -1 if orientation.flip_rows else 1, :: -1 if orientation.flip_cols else 1]


def _peek_orientation(stream: "VideoStream", packet) -> _Orientation | None:
    """The orientation of the first frame `packet` completes (None while none has); upright if decoding fails,
    which decoding the frames reports properly."""
    import av

    try:
        decoded = stream.decode(packet)
    except av.error.FFmpegError:
        return _UPRIGHT
    return _orientation(decoded[0], stream) if decoded else None


@contextmanager
def _ffmpeg_errors(path: str | Path, doing: str) -> Iterator[None]:
    """Turn PyAV/FFmpeg exceptions raised while `doing` something into a VideoError."""
    import av

    try:
        yield
    except av.error.FFmpegError as exc:
        hint = "not a video FFmpeg can read (corrupt, truncated, or another kind of file)"
        raise VideoError(path, f"{doing} failed: {exc.strerror or exc}; {hint}") from exc


@contextmanager
def _open_video_stream(path: str | Path) -> Iterator[tuple["InputContainer", "VideoStream"]]:
    """Open `path` and yield (container, first video stream), after checking the file is usable."""
    import av

    file = Path(path)
    if not file.exists():
        raise VideoError(path, "no such file")
    if not file.is_file():
        raise VideoError(path, "not a regular file")
    if file.stat().st_size == 0:
        raise VideoError(path, "file is empty")
    with _ffmpeg_errors(path, "opening the container"):
        container = av.open(str(file))
    try:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoError(path, f"no video stream (streams found: {', '.join(kinds)})")
        stream = container.streams.video[0]
        if stream.codec_context is None:  # PyAV leaves it unset when FFmpeg has no decoder for the codec
            raise VideoError(path, f"unsupported codec: this FFmpeg build ({av.ffmpeg_version_info}) does not know or cannot decode the video stream's codec")
        yield container, stream
    finally:
        container.close()


def probe_video(path: str | Path) -> VideoInfo:
    """Container facts about the first video stream; raises VideoError if there is none usable.

    Width and height are those displayed: swapped when the frames are turned a quarter (the first
    frame is decoded to find out).
    """
    with _open_video_stream(path) as (container, stream):
        context = stream.codec_context
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        frames = stream.frames
        orientation, packets = None, 0
        with _ffmpeg_errors(path, "reading packets"):
            for packet in container.demux(stream):
                packets += 1 if packet.size else 0
                if orientation is None:
                    orientation = _peek_orientation(stream, packet)
                if orientation is not None and frames:
                    break
        frames = frames or packets
        width, height = context.width, context.height
        if orientation is not None and orientation.transpose:
            width, height = height, width
        if container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE units
        elif stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = frames / fps if fps else 0.0
        return VideoInfo(frames, fps, width, height, context.codec.canonical_name, duration)


def iter_frames(
    path: str | Path,
    start: int = 0,
    stop: int | None = None,
    *,
    chunk_frames: int = 32,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> Iterator[torch.Tensor]:
    """Decode frames [start, stop) in presentation order as upright uint8 RGB chunks [t, H, W, 3], t <= chunk_frames.

    The file is probed and checked against `limits` right away; decoding happens while iterating.
    Frames before `start` are decoded (codecs need their references) but never converted to RGB.
    Raises VideoError when the file is unusable or decodes to no frames at all.
    """
    if start < 0 or (stop is not None and stop < start) or chunk_frames < 1:
        raise ValueError(f"bad frame range/chunk: start={start}, stop={stop}, chunk_frames={chunk_frames}")
    limits.check(path, probe_video(path))
    return _decode_chunks(path, start, stop, chunk_frames)


def _decode_chunks(path: str | Path, start: int, stop: int | None, chunk_frames: int) -> Iterator[torch.Tensor]:
    import av

    decoded = 0
    batch: list[np.ndarray] = []
    with _open_video_stream(path) as (container, stream):
        stream.thread_type = "AUTO"  # frame threads: same pixels, faster H.264/HEVC decoding
        try:
            for frame in container.decode(stream):
                index, decoded = decoded, decoded + 1
                if stop is not None and index >= stop:
                    break
                if index < start:
                    continue
                batch.append(_upright(frame.to_ndarray(format="rgb24"), _orientation(frame, stream)))
                if len(batch) == chunk_frames:
                    yield torch.from_numpy(np.stack(batch))
                    batch = []
        except av.error.FFmpegError as exc:
            raise VideoError(path, f"decoding failed after {decoded} frames: {exc.strerror or exc}; the stream is corrupt or truncated") from exc
    if decoded == 0:
        raise VideoError(path, "the video stream has no decodable frames")
    if batch:
        yield torch.from_numpy(np.stack(batch))


def read_images(path: str | Path, start: int = 0, stop: int | None = None, *, limits: DecodeLimits = DEFAULT_LIMITS) -> torch.Tensor:
    """Frames [start, stop) as uint8 RGB images [T, H, W, 3]."""
    chunks = list(iter_frames(path, start, stop, limits=limits))
    if chunks:
        return torch.cat(chunks)
    info = probe_video(path)  # the range held no frames: keep the frame size in the empty result
    return torch.empty((0, info.height, info.width, 3), dtype=torch.uint8)


def images_to_frames(images: torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] in [0, 1], the way upstream converts (x.float() / 255)."""
    return images.permute(0, 3, 1, 2).float() / 255.0


def read_frames(path: str | Path, start: int = 0, stop: int | None = None, *, limits: DecodeLimits = DEFAULT_LIMITS) -> torch.Tensor:
    """Frames [start, stop) of a video as float32 [T, 3, H, W] in [0, 1] (RGB), like upstream's read_frames."""
    return images_to_frames(read_images(path, start, stop, limits=limits))
