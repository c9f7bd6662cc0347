"""Conversions between protobuf messages and the library's types (one place, both directions)."""

from __future__ import annotations

import time

from ..jobs.manifest import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Manifest, VideoRef
from ..jobs.options import JobOptions
from ..jobs.runner import ImagesRendered, JobEvent, JobFinished, StageFinished, StageStarted
from ..stages.artifacts import Timing, object_digest
from ..stages.generate import BlockPublished, GenerateOutput
from ..stages.render import RenderOptions, RenderOutput
from ..stages.identity import ModelIdentity
from ..stages.image_job_render import ImageRenderOutput
from ..store.base import InvalidKey, ObjectStore
from ..store.keys import validate_key
from .generated import common_pb2, coordinator_pb2, depthrender_pb2, generator_pb2
from .options_proto import options_from_proto, options_to_proto

JOB_STATES = {
    QUEUED: coordinator_pb2.JOB_STATE_QUEUED, RUNNING: coordinator_pb2.JOB_STATE_RUNNING,
    SUCCEEDED: coordinator_pb2.JOB_STATE_SUCCEEDED, FAILED: coordinator_pb2.JOB_STATE_FAILED,
    CANCELLED: coordinator_pb2.JOB_STATE_CANCELLED,
}  # fmt: skip


def video_ref_to_key(store: ObjectStore, ref: common_pb2.ObjectRef) -> tuple[str, str]:
    """The input video's key and content digest (the caller's sha256, else the store's)."""
    key = ref_to_key(store, ref, "video")
    return key, ref.sha256 or object_digest(store, key)


def ref_to_key(store: ObjectStore, ref: common_pb2.ObjectRef, what: str) -> str:
    """The key of a reference into this service's bucket (refs into other buckets are refused), checked
    (InvalidKey, a ValueError) before any store is asked about it."""
    if not ref.key:
        raise ValueError(f"{what}: object reference has no key")
    if ref.bucket and ref.bucket != store.bucket:
        raise ValueError(f"{what}: bucket {ref.bucket!r} is not this deployment's bucket {store.bucket!r}")
    try:
        return validate_key(ref.key)
    except InvalidKey as error:
        raise InvalidKey(f"{what}: {error}") from None


def key_to_ref(store: ObjectStore, key: str) -> common_pb2.ObjectRef:
    info = store.stat(key)
    return common_pb2.ObjectRef(bucket=store.bucket, key=key, size=info.size if info else 0, sha256=info.sha256 if info else "")


def timing_to_proto(timing: Timing) -> common_pb2.StageTiming:
    return common_pb2.StageTiming(stage=timing.stage, seconds=timing.seconds, cache_hit=timing.cache_hit)


def timing_from_proto(timing: common_pb2.StageTiming) -> Timing:
    return Timing(timing.stage, timing.seconds, timing.cache_hit)


def identity_to_proto(identity: ModelIdentity) -> common_pb2.ModelIdentity:
    return common_pb2.ModelIdentity(name=identity.name, digest=identity.digest, random=identity.random)


def _download_url(store: ObjectStore, key: str) -> str:
    try:
        return store.presigned_get(key)
    except Exception:  # a store that cannot sign URLs: the client reads the key itself
        return ""


def block_to_proto(store: ObjectStore, block: BlockPublished) -> common_pb2.BlockGenerated:
    chunk = key_to_ref(store, block.key)
    chunk.url = _download_url(store, block.key)  # so a client can see the frames while the job runs
    return common_pb2.BlockGenerated(
        index=block.index, blocks=block.blocks, first_frame=block.first_frame, frames=block.frames,
        chunk=chunk, seconds=block.seconds,
    )  # fmt: skip


def block_from_proto(block: common_pb2.BlockGenerated) -> BlockPublished:
    return BlockPublished(block.index, block.blocks, block.first_frame, block.frames, block.chunk.key, block.seconds)


def render_output_to_proto(store: ObjectStore, render: RenderOutput) -> depthrender_pb2.RenderResponse:
    return depthrender_pb2.RenderResponse(
        schedule=key_to_ref(store, render.schedule_key), render=key_to_ref(store, render.render_key),
        mask=key_to_ref(store, render.mask_key), frames=render.frames, timing=timing_to_proto(render.timing),
    )  # fmt: skip


def render_output_from_proto(response: depthrender_pb2.RenderResponse) -> RenderOutput:
    return RenderOutput(response.schedule.key, response.render.key, response.mask.key, response.frames,
                        timing_from_proto(response.timing))  # fmt: skip


IMAGE_RENDER_NAMES = {"schedule": "schedule.json", "render": "render.mkv", "mask": "mask.mkv", "source": "source.mkv"}


def images_rendered_to_proto(store: ObjectStore, rendered: ImagesRendered,
                             identity: ModelIdentity | None) -> depthrender_pb2.RenderImagesResponse:  # fmt: skip
    """`identity` None: the job's own geometry made it (no model)."""
    output = rendered.output
    refs = {field: key_to_ref(store, output.keys[name]) for field, name in IMAGE_RENDER_NAMES.items()}
    response = depthrender_pb2.RenderImagesResponse(**refs, frames=output.frames, real_frames=output.real_frames,
                                                    timing=timing_to_proto(output.timing))  # fmt: skip
    if identity is not None:
        response.model.CopyFrom(identity_to_proto(identity))
    return response


def images_rendered_from_proto(response: depthrender_pb2.RenderImagesResponse) -> ImagesRendered:
    keys = {name: getattr(response, field).key for field, name in IMAGE_RENDER_NAMES.items()}
    output = ImageRenderOutput(keys, response.frames, response.real_frames, timing_from_proto(response.timing))
    return ImagesRendered(output, response.model.digest)


def generate_output_to_proto(store: ObjectStore, output: GenerateOutput, identity: ModelIdentity) -> generator_pb2.GenerateResult:
    refs = {name: key_to_ref(store, key) for name, key in output.keys.items()}
    return generator_pb2.GenerateResult(
        video=refs["pred"], frames=output.frames, timing=timing_to_proto(output.timing), model=identity_to_proto(identity),
        source=refs["source"], render=refs["render"], compare=refs["compare"],
    )  # fmt: skip


def generate_output_from_proto(result: generator_pb2.GenerateResult) -> GenerateOutput:
    keys = {"pred": result.video.key, "source": result.source.key, "render": result.render.key, "compare": result.compare.key}
    return GenerateOutput(keys, result.frames, timing_from_proto(result.timing), result.model.digest)


def job_to_proto(store: ObjectStore, job: Manifest) -> coordinator_pb2.Job:
    outputs = {name: common_pb2.ObjectRef(bucket=store.bucket, key=key, url=_download_url(store, key))
               for name, key in job.outputs.items()}  # fmt: skip
    timings = [common_pb2.StageTiming(stage=name, seconds=record.seconds, cache_hit=record.cache_hit)
               for name, record in job.stages.items()]  # fmt: skip
    return coordinator_pb2.Job(
        job_id=job.job_id, state=JOB_STATES[job.state], options=options_to_proto(job.options),
        video=_input_ref(store, job.video),
        caption=job.caption or "", timings=timings, outputs=coordinator_pb2.JobOutputs(**outputs),
        error=job.error or "", created_unix=job.created, updated_unix=job.updated,
        blocks_done=job.blocks_done, blocks_total=job.blocks_total,
        images=[_input_ref(store, image) for image in job.images],
        geometry=_input_ref(store, job.geometry) if job.geometry is not None else None,
    )  # fmt: skip


def _input_ref(store: ObjectStore, ref: VideoRef) -> common_pb2.ObjectRef:
    return common_pb2.ObjectRef(bucket=store.bucket, key=ref.key, size=ref.size, sha256=ref.sha256)


def render_options_from_proto(options: common_pb2.JobOptions) -> RenderOptions:
    """The render stage's options from a job's options (validated first: bad trajectories fail fast)."""
    job_options = options_from_proto(options)
    job_options.validate(whole_job=False)
    return job_options.render_options()


def render_options_to_proto(options: RenderOptions, force: bool) -> common_pb2.JobOptions:
    return options_to_proto(JobOptions(
        trajectory_text=options.trajectory_text, relative_to_source=options.relative_to_source,
        rotation_only=options.rotation_only, adaptive_frames=options.adaptive_frames,
        freeze_repeat=options.freeze_repeat, freeze_frame=options.freeze_frame, force=force,
        model_version=options.model_version,
    ))  # fmt: skip


def event_to_proto(store: ObjectStore, job_id: str, event: JobEvent) -> coordinator_pb2.JobEvent:
    message = coordinator_pb2.JobEvent(job_id=job_id, unix_time=time.time())
    if isinstance(event, StageStarted):
        message.stage_started.stage = event.stage
    elif isinstance(event, StageFinished):
        message.stage_finished.timing.CopyFrom(timing_to_proto(event.timing))
    elif isinstance(event, BlockPublished):
        message.block.CopyFrom(block_to_proto(store, event))
    elif isinstance(event, JobFinished):
        message.finished.CopyFrom(job_to_proto(store, event.manifest))
    else:
        raise TypeError(f"unknown job event {event!r}")
    return message
