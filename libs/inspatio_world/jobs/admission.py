"""Admission: everything knowable about a job at submit time is checked at submit time (issue 11).

A job whose video cannot be decoded, is a still image, is too large, whose frame plan makes no whole
generator block or more frames than the deployment allows, or whose per-frame trajectory does not
have one camera per rendered frame is refused before any stage runs (and before its upload reaches
the store), with a ValueError (INVALID_ARGUMENT) naming the field and the limit; its `field`
(refusals.field_of) is the request field to change, relative to the JobSpec: the video's field, the
trajectory, or freeze_repeat, whichever made the frame plan too small or too large.

`planned_frames` is the one computation of "how many frames will this job give": the CLI's frame
notice uses it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import envvars
from ..refusals import FieldError
from .options import JobOptions, option_field

# Codecs that hold pictures, not motion: one of these with at most one frame is a still image.
IMAGE_CODECS = frozenset({"png", "apng", "mjpeg", "jpegls", "jpeg2000", "bmp", "tiff", "webp", "gif", "ppm", "pgm",
                          "pam", "qoi", "exr", "dpx", "sgi", "targa", "pcx", "xbm", "xwd", "hdr", "jpegxl"})  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """The deployment's limits on a job (envvars MAX_INPUT_PIXELS, MAX_INPUT_FRAMES, MAX_OUTPUT_FRAMES)."""

    max_input_pixels: int = 3840 * 2160
    max_input_frames: int = 10_000
    max_output_frames: int = 1000

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(envvars.get_positive_int(envvars.MAX_INPUT_PIXELS), envvars.get_positive_int(envvars.MAX_INPUT_FRAMES),
                   envvars.get_positive_int(envvars.MAX_OUTPUT_FRAMES))  # fmt: skip


@dataclass(frozen=True)
class Planned:
    """What a job will make of a video of `video_frames` frames."""

    video_frames: int
    used_frames: int  # min(video_frames, SOURCE_MAX_FRAMES): what depth and render read
    render_cameras: int  # frames the render stage warps (after the time-freeze): one camera each
    plan: object  # geometry.frame_schedule.FramePlan: the generator's input frames
    generated_frames: int  # whole blocks' output frames (0: too short to generate anything)
    blocks: int


def planned_frames(video_frames: int, options: JobOptions, render=None) -> Planned:
    """The frame plan of `options` over a video of `video_frames` frames, exactly as the stages make it
    (stages/render.RenderOptions.frame_plan, then the generator's whole blocks)."""
    from ..geometry.frame_schedule import freeze_indices
    from ..media.dataset_inputs import SOURCE_MAX_FRAMES
    from ..models.sampler import SamplerConfig
    from ..pipeline.generator import FramePlan as GeneratedFrames

    render = render or options.render_options()
    used = min(video_frames, SOURCE_MAX_FRAMES)
    plan = render.frame_plan(video_frames, used)
    generated = GeneratedFrames.for_frames(len(plan), SamplerConfig().frames_per_block)
    cameras = len(freeze_indices(used, options.freeze_repeat, options.freeze_frame))
    output = generated.output_frames
    if plan.adjustment == "padded":  # v1.5 cuts the padding off again
        output = min(output, plan.aligned_frames)
    return Planned(video_frames, used, cameras, plan, output, generated.blocks)


def probe_as(path: Path, shown_as: str, field: str = ""):
    """probe_video of a received file, its errors naming the video as the client knows it (upload name
    or store key), not the server's temp file, and the request `field` that named it."""
    from ..media.decode import VideoError, probe_video

    try:
        return probe_video(path)
    except VideoError as error:
        raise VideoError(shown_as, error.problem, field) from None


def admit_video(path: Path, limits: Limits, shown_as: str, video_field: str = "") -> int:
    """The checks of the video alone (decodes, not a still image, within the pixel and frame limits);
    returns how many of the frames the stages use decode. Jobs (`admit`) and live sessions share them."""
    from ..media.decode import VideoError

    info = probe_as(path, shown_as, video_field)
    if info.codec in IMAGE_CODECS and info.frames <= 1:
        raise VideoError(shown_as, f"a still image ({info.codec}), not a video: upload a video of at least a few frames",
                         video_field)
    pixels = info.width * info.height
    if pixels > limits.max_input_pixels:
        raise VideoError(shown_as, f"{info.width}x{info.height} frames ({pixels} pixels) exceed this deployment's limit of "
                                   f"{limits.max_input_pixels} pixels per frame ({envvars.MAX_INPUT_PIXELS.name}): scale the video down",
                         video_field)  # fmt: skip
    if info.frames > limits.max_input_frames:
        raise VideoError(shown_as, f"{info.frames} frames exceed this deployment's limit of {limits.max_input_frames} frames "
                                   f"({envvars.MAX_INPUT_FRAMES.name}); only the first 1000 are used anyway: cut the video",
                         video_field)  # fmt: skip
    return _decodable_frames(path, shown_as, info.frames, video_field)


def admit(path: Path, options: JobOptions, limits: Limits, shown_as: str, video_field: str = "") -> Planned:
    """Probe a received video (a local file) and check it against `options` and `limits`; ValueError if refused.

    `shown_as` names the video as the client knows it (upload name or store key), `video_field` the
    JobSpec field that named it ("upload_name" or "video_uri")."""
    from ..geometry.trajectory import PerFrameTrajectory

    frames = admit_video(path, limits, shown_as, video_field)
    render = options.render_options()
    planned = planned_frames(frames, options, render)
    if isinstance(render.trajectory, PerFrameTrajectory) and len(render.trajectory.w2c) != planned.render_cameras:
        freeze = f" + freeze_repeat {options.freeze_repeat}" if options.freeze_repeat > 0 else ""
        raise FieldError(options.trajectory_field,
            f"trajectory: the per-frame trajectory has {len(render.trajectory.w2c)} cameras (lines) but the render needs "
            f"{planned.render_cameras}, one per frame ({planned.used_frames} video frames{freeze}): give exactly "
            f"{planned.render_cameras} lines")  # fmt: skip
    field, why = _cause(options, render, planned, video_field)
    if options.render_only:
        if len(planned.plan) > limits.max_output_frames:
            raise FieldError(field, f"the job would render {len(planned.plan)} frames{why}, more than this deployment's limit of "
                             f"{limits.max_output_frames} ({envvars.MAX_OUTPUT_FRAMES.name})")  # fmt: skip
        return planned
    if planned.generated_frames <= 0:
        raise FieldError(field, f"{shown_as}: {frames} frames give the generator {len(planned.plan)} input frames{why}, no whole "
                         f"block; it needs at least 9 (use a longer video, turn on the adaptive frame rule, or set render_only)")  # fmt: skip
    if planned.generated_frames > limits.max_output_frames:
        raise FieldError(field, f"the job would generate {planned.generated_frames} frames ({planned.blocks} blocks){why}, more than "
                         f"this deployment's limit of {limits.max_output_frames} output frames ({envvars.MAX_OUTPUT_FRAMES.name})")  # fmt: skip
    return planned


def _cause(options: JobOptions, render, planned: Planned, video_field: str) -> tuple[str, str]:
    """What made the frame plan what it is: the field to change and the words that say why."""
    from ..geometry.trajectory import total_angle

    adjustment = str(planned.plan.adjustment)
    if adjustment == "bounce":
        return options.trajectory_field, (
            f": upstream's adaptive frame rule stretches the video's {planned.plan.aligned_frames} frames to "
            f"{len(planned.plan)} for the trajectory's {total_angle(render.trajectory):.1f} deg turn "
            f"(disable it with adaptive_frames off / --no-adaptive-frames, or use a shorter trajectory)")
    if options.freeze_repeat > 0:
        return option_field("freeze_repeat"), f" (freeze_repeat {options.freeze_repeat} included)"
    return video_field, ""


def _decodable_frames(path: Path, shown_as: str, declared: int, video_field: str) -> int:
    """Decode (without converting) the frames the job will use; VideoError naming the frame that fails.
    Returns how many of them decode (a truncated file may hold fewer than it declares)."""
    import av

    from ..media.dataset_inputs import SOURCE_MAX_FRAMES
    from ..media.decode import VideoError

    wanted = min(declared, SOURCE_MAX_FRAMES) if declared else SOURCE_MAX_FRAMES
    decoded = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                decoded += 1
                if decoded >= wanted:
                    break
    except av.error.FFmpegError as exc:
        raise VideoError(shown_as, f"decoding failed after {decoded} frames: {exc.strerror or exc}; the stream is corrupt "
                                   f"or truncated", video_field) from None  # fmt: skip
    if decoded == 0:
        raise VideoError(shown_as, "the video stream has no decodable frames", video_field)
    return decoded
