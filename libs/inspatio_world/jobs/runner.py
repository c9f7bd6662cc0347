"""Running one job: caption and depth at the same time, then render, then generation block by block.
With a stage client that streams the render (`streams_render`: LocalStages, and RemoteStages by
default) a full job's render is made inside the generate call, block by block (`render_and_generate`,
stages/render_feed.py), under one time budget for both.

An image job (v1.5: 1 or 4 pictures, `Manifest.images`) has one conditioning stage instead of three,
`image_render` (DA3 over the views, each frame rendered from every view and fused, the source stream
anchored per block: stages/image_job_render.py), then the same generate stage, fed the source stream.

A render-only job (upstream's --skip_step3) stops after the render: its render, hole mask and
matching source frames are published as mp4s (`stages/render_videos.py`, a CPU transcode done
here, not by a stage service) and nothing is generated. The render stage is called exactly as for a
full job, so a later full job on the same video and trajectory finds the render in the cache.

The runner talks to the stages through a `StageClient` (in process, or over gRPC), saves the
manifest after every step and every block, and reports progress as events. A failed or cancelled
job's final manifest is the last one saved, with its state and error set, so it keeps the caption,
stage records and blocks done so far. Stage outputs are content-addressed, so re-running a job after
a crash (or on another coordinator) repeats no work: finished stages come back from the store as
cache hits.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from ..media.dataset_inputs import SOURCE_MAX_FRAMES
from ..refusals import BudgetExceeded
from ..stages.artifacts import Timing
from ..stages.caption import CaptionOutput
from ..stages.depth import DepthOutput
from ..stages.artifacts import object_digest
from ..stages.generate import BlockPublished, GenerateInputs, GenerateOutput
from ..stages.image_job_render import ImageRenderOutput
from ..stages.render import RenderOptions, RenderOutput
from ..stages.render_videos import run_render_videos
from ..store.base import ObjectStore
from . import manifest as manifests
from .admission import planned_frames
from .budgets import StageBudgets, StageCall
from .manifest import CANCELLED, FAILED, RUNNING, SUCCEEDED, Manifest, StageRecord, VideoRef

log = logging.getLogger(__name__)


class StageClient(Protocol):
    """The four stages, wherever they run. `call` carries the call's time budget and the job's cancel
    event: a client stops the stage when either ends (jobs/budgets.py). `model_versions`: the releases
    whose jobs it can run (a client without the attribute runs v1 only)."""

    model_versions: tuple[str, ...]

    def caption(self, video: VideoRef, force: bool, call: StageCall | None = None) -> CaptionOutput: ...

    def depth(self, video: VideoRef, force: bool, call: StageCall | None = None, model_version: str = "v1") -> DepthOutput: ...

    def render(self, video: VideoRef, depth_key: str, options: RenderOptions, force: bool,
               call: StageCall | None = None) -> RenderOutput: ...  # fmt: skip

    def generate(self, inputs: GenerateInputs, force: bool, call: StageCall | None = None) -> Iterator[BlockPublished | GenerateOutput]: ...

    def render_images(self, images: tuple[VideoRef, ...], options: RenderOptions, force: bool, call: StageCall | None = None,
                      geometry: VideoRef | None = None) -> "ImagesRendered": ...  # fmt: skip

    # Optional: a client whose `streams_render` is true also offers `render_and_generate` (the render
    # made block by block inside the generate call, stages/render_feed.py), which full jobs then use.


@dataclass(frozen=True)
class ImagesRendered:
    """An image job's conditioning (`StageClient.render_images`) and the DA3 weights that made it."""

    output: ImageRenderOutput
    model: str  # the depth model identity's digest ("": the job's own geometry, no model)

    @property
    def timing(self) -> Timing:
        return self.output.timing


@dataclass(frozen=True)
class StageStarted:
    stage: str


@dataclass(frozen=True)
class StageFinished:
    timing: Timing


@dataclass(frozen=True)
class JobFinished:
    manifest: Manifest


JobEvent = StageStarted | StageFinished | BlockPublished | JobFinished
EventSink = Callable[[str, JobEvent], None]


class JobCancelled(Exception):
    pass


class _SavedManifest:
    """Saves one job's manifest and remembers the last one saved: what a failed or cancelled job ends with."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.last: Manifest | None = None

    def __call__(self, manifest: Manifest) -> Manifest:
        self.last = manifests.save(self.store, manifest)
        return self.last


class JobRunner:
    def __init__(self, store: ObjectStore, stages: StageClient, emit: EventSink = lambda job_id, event: None,
                 budgets: StageBudgets | None = None) -> None:  # fmt: skip
        self.store = store
        self.stages = stages
        self.emit = emit
        self.budgets = budgets or StageBudgets.from_env()

    def run(self, manifest: Manifest, cancel: threading.Event | None = None) -> Manifest:
        """Run (or resume) a job to a terminal state; never raises for a failing job."""
        cancel = cancel or threading.Event()
        save = _SavedManifest(self.store)
        job = save(manifest.with_(state=RUNNING, error=None))
        try:
            job = self._run_stages(job, cancel, save).with_(state=SUCCEEDED)
        except JobCancelled:
            job = save.last.with_(state=CANCELLED)  # keeps the progress saved so far
        except Exception as exc:  # the job fails; the runner (and the coordinator) go on
            if cancel.is_set():  # a stage call cut short by the cancel itself
                job = save.last.with_(state=CANCELLED)
            else:
                log.error("job %s failed", job.job_id, exc_info=True, extra={"fields": {"job_id": job.job_id}})
                # A budget's message starts with DEADLINE_EXCEEDED, the status it stands for.
                error = str(exc) if isinstance(exc, BudgetExceeded) else f"{type(exc).__name__}: {exc}"
                job = save.last.with_(state=FAILED, error=error)
        job = save(job.with_(outputs={**job.outputs, "manifest": job.key}))
        self.emit(job.job_id, JobFinished(job))
        return job

    def _check(self, cancel: threading.Event) -> None:
        if cancel.is_set():
            raise JobCancelled()

    def _stage(self, job: Manifest, stage: str, call: Callable[[], object]):
        self.emit(job.job_id, StageStarted(stage))
        result = call()
        self.emit(job.job_id, StageFinished(result.timing))
        return result

    def _run_stages(self, job: Manifest, cancel: threading.Event, save: _SavedManifest) -> Manifest:
        """The stages in turn; the manifest is saved through `save` after each step and block. Returns
        the finished job's manifest (not yet saved)."""
        options, force = job.options, job.options.force
        self._check(cancel)
        frames = min(job.video.frames or SOURCE_MAX_FRAMES, SOURCE_MAX_FRAMES)  # unknown (an older job): the most

        def budget(stage: str, units: int) -> StageCall:  # counted from the call's start
            return self.budgets.call(stage, units, cancel)

        if job.images:
            return self._run_image_stages(job, cancel, save, budget)

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"job-{job.job_id}") as pool:
            depth_future = pool.submit(self._stage, job, "depth", lambda: self.stages.depth(
                job.video, force, budget("depth", frames), model_version=options.model_version))  # fmt: skip
            if options.prompt is None:
                captioned = self._stage(job, "caption", lambda: self.stages.caption(job.video, force, budget("caption", frames)))
                caption, caption_record = captioned.caption, _record(captioned.timing, caption=captioned.key)
                caption_weights = {"caption": captioned.model}
            else:  # the user's prompt replaces the caption: the captioner never runs
                caption, caption_record, caption_weights = options.prompt, StageRecord(0.0, False), {}
            depth = depth_future.result()
        job = job.with_stage("caption", caption_record, caption=caption, weights={**job.weights, **caption_weights})
        job = save(job.with_stage("depth", _record(depth.timing, depth=depth.key),
                                  weights={**job.weights, "depth": depth.model}))  # fmt: skip

        self._check(cancel)
        render_options = options.render_options()
        planned = planned_frames(depth.video.frames, options, render_options)
        if not options.render_only and getattr(self.stages, "streams_render", False):
            # Render inside the generate call, block by block: the first block needs only its own
            # frames' render (stages/render_feed.py). One budget covers both stages' work.
            self.emit(job.job_id, StageStarted("render"))
            self.emit(job.job_id, StageStarted("generate"))
            call = self.budgets.joint({"render": planned.render_cameras, "generate": planned.blocks}, cancel)
            events = self.stages.render_and_generate(job.video, depth.key, render_options, caption, options.seed,
                                                     options.autoencoder, force, call)  # fmt: skip
            return self._generate(job, events, cancel, save)
        render = self._stage(job, "render", lambda: self.stages.render(
            job.video, depth.key, render_options, force, budget("render", planned.render_cameras)))  # fmt: skip
        job = save(_with_render(job, render))

        self._check(cancel)
        if options.render_only:
            videos = self._stage(job, "render_videos", lambda: run_render_videos(
                self.store, job.video.key, job.video.sha256, render.schedule_key, render.render_key, render.mask_key, force))  # fmt: skip
            return job.with_stage("render_videos", _record(videos.timing, **videos.keys), outputs=dict(videos.keys))
        inputs = GenerateInputs(job.video.key, job.video.sha256, render.schedule_key, render.render_key, render.mask_key,
                                caption, options.seed, options.autoencoder, options.model_version)  # fmt: skip
        self.emit(job.job_id, StageStarted("generate"))
        return self._generate(job, self.stages.generate(inputs, force, budget("generate", planned.blocks)), cancel, save)

    def _run_image_stages(self, job: Manifest, cancel: threading.Event, save: _SavedManifest,
                          budget: Callable[[str, int], StageCall]) -> Manifest:  # fmt: skip
        """image_render, then generate from its source stream (the prompt is required: no caption)."""
        from ..geometry.frame_schedule import padded_frame_count
        from ..models.sampler import SamplerConfig
        from ..pipeline.generator import FramePlan

        options = job.options
        render_options = options.render_options()
        frames = padded_frame_count(len(render_options.trajectory.w2c))
        images = self._stage(job, "image_render", lambda: self.stages.render_images(
            job.images, render_options, options.force, budget("render", frames * len(job.images)), geometry=job.geometry))  # fmt: skip
        keys = {name.split(".")[0]: key for name, key in images.output.keys.items()}
        weights = {**job.weights, "depth": images.model} if images.model else job.weights
        job = save(job.with_stage("image_render", _record(images.timing, **keys), caption=options.prompt, weights=weights))
        self._check(cancel)
        inputs = GenerateInputs(keys["source"], object_digest(self.store, keys["source"]), keys["schedule"], keys["render"],
                                keys["mask"], options.prompt, options.seed, options.autoencoder, options.model_version)  # fmt: skip
        blocks = FramePlan.for_frames(frames, SamplerConfig().frames_per_block).blocks
        self.emit(job.job_id, StageStarted("generate"))
        return self._generate(job, self.stages.generate(inputs, options.force, budget("generate", blocks)), cancel, save)

    def _generate(self, job: Manifest, events: Iterator[RenderOutput | BlockPublished | GenerateOutput], cancel: threading.Event,
                  save: _SavedManifest) -> Manifest:  # fmt: skip
        """Follow a generate stream to its result, saving the manifest at every block (and at the render
        a streamed render publishes); returns the finished job's manifest (not yet saved)."""
        try:
            for event in events:
                if isinstance(event, RenderOutput):
                    job = save(_with_render(job, event))
                    self.emit(job.job_id, StageFinished(event.timing))
                elif isinstance(event, BlockPublished):
                    # A resumed job generates again from block 0: its progress never goes back.
                    job = save(job.with_(blocks_done=max(job.blocks_done, event.index + 1), blocks_total=event.blocks))
                    self.emit(job.job_id, event)
                    self._check(cancel)
                else:
                    self.emit(job.job_id, StageFinished(event.timing))
                    return job.with_stage("generate", _record(event.timing, **event.keys), outputs=dict(event.keys),
                                          weights={**job.weights, "generator": event.model})  # fmt: skip
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # stops the generator (or cancels the stream) when the job is cancelled
        raise RuntimeError("the generator stream ended without a result")


def _with_render(job: Manifest, render: RenderOutput) -> Manifest:
    return job.with_stage("render", _record(render.timing, schedule=render.schedule_key, render=render.render_key, mask=render.mask_key))


def _record(timing: Timing, **keys: str) -> StageRecord:
    return StageRecord(timing.seconds, timing.cache_hit, dict(keys))
