"""What a render-only job (upstream's --skip_step3) hands the user: the render as videos to watch.

The render stage keeps its results as lossless intermediates (FFV1 .mkv) for the generator. A job
that stops after the render publishes them as H.264 mp4s at 24 fps instead, frame-aligned and on
the render stage's schedule (time-freeze, bounce or subsampling applied), i.e. exactly the three
videos the generator would be conditioned on:

* `source.mp4`: the source frames, resized to the render's size (as a full job's `source.mp4`);
* `render.mp4`: the warped frames, holes black;
* `mask.mp4`:   white where the render has a pixel, black in the holes.

Render and mask are written as upstream's renderer writes its videos (libx264, crf 18), the source
as the generator stage writes it. A v1.5 render (a "padded" schedule) is published without the padding
frames, at the source's fps, with the source centre-cropped. Content-addressed by the input video and the render stage's
three objects, so a repeated render-only job re-encodes nothing. This is a CPU transcode (no
model), run by whoever runs the job: the coordinator, or the in-process runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import torch

from ..media.centre_crop import centre_crop
from ..media.dataset_inputs import SOURCE_MAX_FRAMES, resize_and_normalize
from ..media.decode import images_to_frames, iter_frames, probe_video
from ..media.video_io import Mp4Writer, to_uint8
from ..store.base import ObjectStore
from ..store.keys import content_key
from .generate import OutputFrames
from .artifacts import MP4, Stopwatch, Timing, all_exist, fetch, get_json, object_digest, scratch

VIDEO_NAMES = ("source.mp4", "render.mp4", "mask.mp4")
RENDER_CRF = 18  # upstream's renderer writes render and mask videos with crf 18
VERSION = "render-videos-1"  # part of the cache key: bump when the published videos change
CHUNK = 16


@dataclass(frozen=True)
class RenderVideosOutput:
    keys: dict[str, str]  # source / render / mask -> key
    frames: int
    timing: Timing


def frames_in_order(images: Iterable[torch.Tensor], order: Sequence[int]) -> Iterator[torch.Tensor]:
    """Yield frames `order[0], order[1], ...` of a video given as chunks [t, ...] in presentation
    order, decoding once and holding a frame only while a later position still needs it (a
    monotone order holds about one frame; a bounce holds the frames it will return to)."""
    last_use = {index: position for position, index in enumerate(order)}
    frames = (frame for chunk in images for frame in chunk)
    held: dict[int, torch.Tensor] = {}
    decoded = 0
    for position, index in enumerate(order):
        while index not in held:
            frame = next(frames, None)
            if frame is None:
                raise ValueError(f"frame {index} is past the end of the video ({decoded} frames)")
            if last_use.get(decoded, -1) >= position:
                held[decoded] = frame
            decoded += 1
        yield held[index]
        if last_use[index] == position:
            del held[index]


def _chunks(frames: Iterator[torch.Tensor], size: int = CHUNK) -> Iterator[torch.Tensor]:
    batch: list[torch.Tensor] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def _source_images(path, size: tuple[int, int], crop: bool) -> Iterator[torch.Tensor]:
    """The source as the generator stage shows it: resized like the generator's input, 8-bit by truncation."""
    for chunk in iter_frames(path, 0, SOURCE_MAX_FRAMES, chunk_frames=CHUNK):
        yield centre_crop(chunk, (size[1], size[0])) if crop else to_uint8(resize_and_normalize(images_to_frames(chunk), size) * 0.5 + 0.5)


def _write(path, images: Iterator[torch.Tensor], width: int, height: int, crf: int | None, fps: float) -> int:
    with Mp4Writer(path, width, height, fps, crf=crf) as writer:
        for chunk in _chunks(images):
            writer.write_images(chunk.contiguous())
    return writer.frames_written


def run_render_videos(store: ObjectStore, video_key: str, video_sha256: str, schedule_key: str, render_key: str,
                      mask_key: str, force: bool = False) -> RenderVideosOutput:  # fmt: skip
    watch = Stopwatch()
    inputs = {"video": video_sha256, "schedule": object_digest(store, schedule_key),
              "render": object_digest(store, render_key), "mask": object_digest(store, mask_key)}  # fmt: skip
    schedule = get_json(store, schedule_key)
    output = OutputFrames.of(schedule)
    options = {"fps": 24, "crf": RENDER_CRF} if output.keep is None else {"fps": output.fps, "crf": RENDER_CRF, "padded": True}
    keys = {name: content_key("render_videos", inputs, options, VERSION, name) for name in VIDEO_NAMES}
    published = {name.removesuffix(".mp4"): key for name, key in keys.items()}
    frames = output.count(len(schedule["source_index"]))
    if not force and all_exist(store, list(keys.values())):
        return RenderVideosOutput(published, frames, watch.timing("render_videos", True))
    with scratch() as folder:
        render_path, mask_path = fetch(store, render_key, folder), fetch(store, mask_key, folder)
        source_path = fetch(store, video_key, folder, "video")
        info = probe_video(render_path)
        width, height = info.width, info.height
        outputs = {name: folder / "out" / name for name in VIDEO_NAMES}
        outputs["source.mp4"].parent.mkdir()
        crop = output.keep is not None
        sources = frames_in_order(_source_images(source_path, (height, width), crop), schedule["source_index"][:frames])
        _write(outputs["source.mp4"], sources, width, height, None, output.fps)
        for name, path in (("render.mp4", render_path), ("mask.mp4", mask_path)):
            # a mask decodes as 0/255 in all three channels; both are exact (lossless) up to here
            images = frames_in_order(iter_frames(path, chunk_frames=CHUNK), schedule["render_index"][:frames])
            _write(outputs[name], images, width, height, RENDER_CRF, output.fps)
        for name in VIDEO_NAMES:  # the cache check wants all three, so a half-published result is redone
            store.put_file(keys[name], outputs[name], content_type=MP4)
    return RenderVideosOutput(published, frames, watch.timing("render_videos", False))
