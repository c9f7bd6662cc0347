"""Step 3 as a stage: generate block by block, publishing each block as soon as it is decoded.

Inputs: the uploaded video, the render stage's schedule, render and mask. Every block's frames
become an object of their own (lossless) the moment they exist, so a client can show them long
before the video is done; at the end the whole video, the matching source and render, and a
side-by-side comparison are published as H.264 mp4s (24 fps, upstream's 8-bit truncation).

v1.5 (the render's schedule is "padded"): the source is centre-cropped as the render's was, the blocks
and videos stop at the real frames (`aligned_frames`: the padding is generated, then cut, as upstream
v1.5 writes only its `valid_frames`), and the videos play at the schedule's fps (the source's).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Generator, Iterator

import torch

from ..media.dataset_inputs import load_render_and_mask, load_source_video
from ..media.background_writer import BackgroundWriter
from ..media.lossless import write_lossless
from ..media.video_io import OUTPUT_FPS, Mp4Writer, to_uint8
from ..pipeline.generator import FramePlan, GenerationRequest, VideoGenerator
from ..run_ahead import ahead
from ..stopping import StopCheck, go_on
from ..store.base import ObjectStore
from ..store.keys import content_key
from .artifacts import MKV, MP4, Stopwatch, Timing, all_exist, fetch, get_json, object_digest, scratch
from .identity import ModelIdentity

VIDEO_NAMES = ("pred.mp4", "source.mp4", "render.mp4", "compare.mp4")


@dataclass(frozen=True)
class GenerateInputs:
    video_key: str
    video_sha256: str
    schedule_key: str
    render_key: str
    mask_key: str
    prompt: str
    seed: int = 0
    autoencoder: str = "wan_vae"
    model_version: str = "v1"


@dataclass(frozen=True)
class OutputFrames:
    """Which generated frames a job keeps and how fast they play (the render's schedule says)."""

    keep: int | None = None  # None: all
    fps: float = OUTPUT_FPS

    @classmethod
    def of(cls, schedule: dict) -> "OutputFrames":
        """A "padded" schedule (v1.5 videos and images) keeps its `aligned_frames` at its `fps`; v1's all at 24."""
        if schedule.get("adjustment") == "padded":
            return cls(int(schedule["aligned_frames"]), float(schedule["fps"]))
        return cls()

    def count(self, generated: int) -> int:
        return generated if self.keep is None else min(generated, self.keep)


@dataclass(frozen=True)
class BlockPublished:
    index: int
    blocks: int
    first_frame: int
    frames: int
    key: str
    seconds: float


@dataclass(frozen=True)
class GenerateOutput:
    keys: dict[str, str]  # pred / source / render / compare -> key
    frames: int
    timing: Timing
    model: str  # digest of the weights that made it (stages/identity.py)


def cache_keys(store: ObjectStore, inputs: GenerateInputs, identity: ModelIdentity) -> dict[str, str]:
    digests = {"video": inputs.video_sha256}
    for name in ("schedule_key", "render_key", "mask_key"):
        digests[name] = object_digest(store, getattr(inputs, name))
    options = {"prompt_sha256": hashlib.sha256(inputs.prompt.encode()).hexdigest(), "seed": inputs.seed, "autoencoder": inputs.autoencoder}
    if inputs.model_version != "v1":  # v1's keys stay as they were
        options["model_version"] = inputs.model_version
    return {name: content_key("generate", digests, options, identity.digest, name) for name in VIDEO_NAMES}


def _load_request(store: ObjectStore, inputs: GenerateInputs, folder: Path) -> tuple[GenerationRequest, OutputFrames]:
    schedule = get_json(store, inputs.schedule_key)
    render, mask = load_render_and_mask(fetch(store, inputs.render_key, folder), fetch(store, inputs.mask_key, folder))
    # The source is resized to the render's size: 480x832 for the real models (upstream's video_size).
    source = load_source_video(fetch(store, inputs.video_key, folder, "video"), size=tuple(render.shape[2:]),
                               crop=inputs.model_version == "v1_5")  # fmt: skip
    source_index, render_index = torch.tensor(schedule["source_index"]), torch.tensor(schedule["render_index"])
    request = GenerationRequest(source[source_index], render[render_index], mask[render_index], inputs.prompt, inputs.seed,
                                inputs.autoencoder)  # fmt: skip
    return request, OutputFrames.of(schedule)


def run_generate(store: ObjectStore, inputs: GenerateInputs, generator: VideoGenerator, identity: ModelIdentity,
                 force: bool = False, should_stop: StopCheck = go_on) -> Iterator[BlockPublished | GenerateOutput]:  # fmt: skip
    """Yields a BlockPublished per block, then the GenerateOutput (only the output on a cache hit)."""
    watch = Stopwatch()
    keys = cache_keys(store, inputs, identity)
    if not force and all_exist(store, list(keys.values())):
        schedule = get_json(store, inputs.schedule_key)
        frames = OutputFrames.of(schedule).count(generator.plan(len(schedule["source_index"])).output_frames)
        yield GenerateOutput({k.removesuffix(".mp4"): v for k, v in keys.items()}, frames, watch.timing("generate", True), identity.digest)
        return
    with scratch() as folder:
        should_stop()
        request, output = _load_request(store, inputs, folder)
        plan = yield from generate_blocks(store, request, generator, folder, keys["pred.mp4"].rsplit("/", 1)[0], should_stop, output)
        publish_videos(store, keys, folder)
    frames = output.count(plan.output_frames)
    yield GenerateOutput({k.removesuffix(".mp4"): v for k, v in keys.items()}, frames, watch.timing("generate", False), identity.digest)


def generate_blocks(store: ObjectStore, request: GenerationRequest, generator: VideoGenerator, folder: Path, block_prefix: str,
                    should_stop: StopCheck = go_on, output: OutputFrames = OutputFrames()) -> Generator[BlockPublished, None, FramePlan]:  # fmt: skip
    """Generate `request` block by block: each block is published as `block_prefix/block_NNNN.mkv` and
    yielded; the four videos of VIDEO_NAMES are written into `folder`. Returns the frame plan.
    `output`: the frames kept (a block's frames past them are dropped) and the videos' fps.

    The GPU does not wait for the CPU: the next block is generated (in a thread, `run_ahead`) while
    this one is published, and the four videos are encoded in a thread of their own."""
    plan = generator.validate(request)
    height, width = request.source.shape[2:]
    blocks = ((block, block.frames.float().cpu()) for block in generator.stream(request, should_stop))
    with BackgroundWriter(_BlockVideos(folder, width, height, output.fps), max_pending=2) as videos, ahead(blocks, name="generate") as ready:
        for block, pred in ready:
            pred = pred[: output.count(block.first_frame + pred.shape[0]) - block.first_frame]
            span = slice(block.first_frame, block.first_frame + pred.shape[0])
            images = to_uint8(pred)
            chunk_key = f"{block_prefix}/block_{block.index:04d}.mkv"
            chunk_path = folder / "block.mkv"
            write_lossless(chunk_path, [images], width, height)
            store.put_file(chunk_key, chunk_path, content_type=MKV)
            videos.write((request.source[span], request.render[span], images))
            yield BlockPublished(block.index, block.blocks, block.first_frame, pred.shape[0], chunk_key, block.seconds)
            should_stop()
    return plan


class _BlockVideos:
    """The four videos of VIDEO_NAMES, appended block by block: write((source, render, pred uint8 images))."""

    def __init__(self, folder: Path, width: int, height: int, fps: float = OUTPUT_FPS) -> None:
        self._writers: dict[str, Mp4Writer] = {}
        for name in VIDEO_NAMES:
            self._writers[name] = Mp4Writer(folder / name, width * (3 if name == "compare.mp4" else 1), height, fps)

    def write(self, block: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        source, render = (to_uint8((video * 0.5 + 0.5).clamp(0, 1)) for video in block[:2])
        pred = block[2]
        for name, images in (("pred.mp4", pred), ("source.mp4", source), ("render.mp4", render),
                             ("compare.mp4", torch.cat([source, render, pred], dim=2))):  # fmt: skip
            self._writers[name].write_images(images)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def publish_videos(store: ObjectStore, keys: dict[str, str], folder: Path) -> None:
    # pred last: its presence marks a complete result for the cache check's readers.
    for name in ("source.mp4", "render.mp4", "compare.mp4", "pred.mp4"):
        store.put_file(keys[name], folder / name, content_type=MP4)
