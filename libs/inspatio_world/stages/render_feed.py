"""Render and generate in one call: each block's render frames are rendered just before the block
needs them, so the first frames come after one block's render, not the whole video's.

Depth must be complete first (its poses are normalised and smoothed over the whole video), and the
renderer's soft z-buffer scale spans every frame (`log_depth_max`, computed up front), but each
render frame is otherwise independent. The generator's frame plan maps each input position t to
render frame render_index[t] (bounced or subsampled), so the frames a block needs are
[0, max(render_index[:n]) + 1) for its first n input frames (`conditioning_frames`).

The numbers are today's: the generator reads the very uint8 frames the render file holds, converted
as `load_render_and_mask` converts them. Outputs land under the same content keys as a render-then-
generate job: the render is published (schedule last) only once every frame is written, so a partial
render never sits under its complete key; the generated videos' keys hash the published render, so
they are computed only then. Blocks stream under a prefix keyed by the render's key instead.
"""

from __future__ import annotations

import hashlib
import time
from typing import Iterator

import torch

from ..media.dataset_inputs import load_source_video, to_mask_values, to_render_values
from ..media.decode import images_to_frames
from ..pipeline.generator import GenerationRequest, VideoGenerator
from ..stopping import StopCheck, go_on
from ..store.base import ObjectStore
from ..store.keys import content_key
from .artifacts import Stopwatch, Timing, fetch, scratch
from .generate import (
    BlockPublished, GenerateInputs, GenerateOutput, OutputFrames, cache_keys, generate_blocks, publish_videos, run_generate,
)  # fmt: skip
from .identity import ModelIdentity
from .render import RenderOptions, RenderOutput, RenderWork, cached_render, render_keys


class RenderFeed:
    """The generator's render and mask inputs ([T, 3, H, W], in plan order), filled on demand from a RenderWork."""

    def __init__(self, work: RenderWork, should_stop: StopCheck = go_on) -> None:
        self._work, self._should_stop = work, should_stop
        self._render_index = work.plan.render_index
        positions = len(self._render_index)
        self.render = torch.empty(positions, 3, work.height, work.width)
        self.mask = torch.empty(positions, 3, work.height, work.width)
        self._positions: dict[int, list[int]] = {}  # render frame -> the input positions showing it
        for position, frame in enumerate(self._render_index):
            self._positions.setdefault(frame, []).append(position)
        self.seconds = 0.0  # spent rendering

    def ensure(self, n: int) -> None:
        """Render until input positions [0, n) are filled (GenerationRequest.ensure_frames)."""
        needed = max(self._render_index[:n], default=-1) + 1
        while self._work.rendered < needed:
            self._next_chunk()

    def finish(self) -> None:
        """Render the frames no block needed, so the render video is complete."""
        while self._work.rendered < self._work.frames:
            self._next_chunk()

    def _next_chunk(self) -> None:
        self._should_stop()
        start = time.perf_counter()
        span, render, mask = self._work.next_chunk()
        render = to_render_values(images_to_frames(render))
        mask = to_mask_values(images_to_frames((mask.to(torch.uint8) * 255)[..., None].expand(*mask.shape, 3)))
        for frame in range(span.start, span.stop):
            for position in self._positions.get(frame, ()):
                self.render[position] = render[frame - span.start]
                self.mask[position] = mask[frame - span.start]
        self.seconds += time.perf_counter() - start


def run_render_and_generate(store: ObjectStore, video_key: str, video_sha256: str, depth_key: str, options: RenderOptions,
                            prompt: str, seed: int, autoencoder: str, generator: VideoGenerator, identity: ModelIdentity,
                            device: torch.device | None = None, force: bool = False,
                            should_stop: StopCheck = go_on) -> Iterator[RenderOutput | BlockPublished | GenerateOutput]:  # fmt: skip
    """The render stage and the generate stage as one: yields the BlockPublished events, the
    RenderOutput as soon as the whole render is published (before the next block handed over, or
    after the last), then the GenerateOutput. A cached render is yielded
    first and generated from as `run_generate` does."""
    watch = Stopwatch()
    keys = render_keys(video_sha256, depth_key, options)
    cached = None if force else cached_render(store, keys, watch)
    if cached is not None:
        yield cached
        yield from run_generate(store, _inputs(video_key, video_sha256, cached, prompt, seed, autoencoder, options.model_version),
                                generator, identity, force, should_stop)  # fmt: skip
        return
    with scratch() as folder:
        should_stop()
        with RenderWork(store, keys, depth_key, options, folder, device) as work:
            feed = RenderFeed(work, should_stop)
            source = load_source_video(fetch(store, video_key, folder, "video"), size=(work.height, work.width),
                                       crop=options.per_frame)  # fmt: skip
            source_index = torch.tensor(work.plan.source_index)
            request = GenerationRequest(source[source_index], feed.render, feed.mask, prompt, seed, autoencoder, feed.ensure)
            prefix = block_prefix(video_sha256, keys["schedule.json"], prompt, seed, autoencoder, identity.digest)
            plan = generator.validate(request)  # before any frame is rendered
            output = OutputFrames.of(work.schedule())
            rendered = None
            for block in generate_blocks(store, request, generator, folder, prefix, should_stop, output):
                if rendered is None and work.rendered == work.frames:  # published as soon as complete
                    rendered = work.publish(Timing("render", feed.seconds, False))
                    yield rendered
                yield block
            if rendered is None:
                feed.finish()
                rendered = work.publish(Timing("render", feed.seconds, False))
                yield rendered
        videos = cache_keys(store, _inputs(video_key, video_sha256, rendered, prompt, seed, autoencoder, options.model_version),
                            identity)  # fmt: skip
        publish_videos(store, videos, folder)
    timing = Timing("generate", watch.timing("generate", False).seconds - feed.seconds, False)
    yield GenerateOutput({k.removesuffix(".mp4"): v for k, v in videos.items()}, output.count(plan.output_frames), timing, identity.digest)


def block_prefix(video_sha256: str, schedule_key: str, prompt: str, seed: int, autoencoder: str, model: str) -> str:
    """Where a streamed render's blocks are published (`block_NNNN.mkv` under it): keyed by the render's
    schedule key, which is known before the render is (`model`: the generator identity's digest)."""
    progress = {"prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(), "seed": seed, "autoencoder": autoencoder}
    return content_key("generate", {"video": video_sha256, "render": schedule_key}, progress, model, "blocks")


def _inputs(video_key: str, video_sha256: str, render: RenderOutput, prompt: str, seed: int, autoencoder: str,
            model_version: str) -> GenerateInputs:  # fmt: skip
    return GenerateInputs(video_key, video_sha256, render.schedule_key, render.render_key, render.mask_key, prompt, seed, autoencoder,
                          model_version)  # fmt: skip
