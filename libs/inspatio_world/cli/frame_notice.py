"""What frame count a job will produce, and why, told before it runs (upstream's adaptive rule can
turn a 300-frame clip into 57 frames without a word)."""

from __future__ import annotations

from pathlib import Path

from ..jobs.options import JobOptions


class TooShort(ValueError):
    """The job would generate no frame at all."""


def frame_notice(video: Path, options: JobOptions, trajectory_label: str) -> str:
    """One line about `video` under `options`; raises VideoError (unreadable video) or TooShort."""
    from ..geometry.frame_schedule import MAX_ANGLE_PER_FRAME, MIN_ANGLE_PER_FRAME, MIN_OUTPUT_FRAMES, needed_frame_range
    from ..geometry.trajectory import total_angle
    from ..jobs.admission import planned_frames
    from ..media.decode import probe_video

    frames = probe_video(video).frames
    render = options.render_options()
    planned = planned_frames(frames, options, render)
    plan, generated = planned.plan, planned.generated_frames
    if options.render_only:
        result = f"{len(plan)} frames rendered (no generation)"
    elif generated <= 0:
        raise TooShort(f"{video.name}: {len(plan)} input frames make no whole 12-frame block; the generator needs at least 9")
    else:
        result = f"{len(plan)} frames in, {generated} generated (whole blocks)"
    if plan.adjustment not in ("bounce", "subsample"):
        return f"{video.name}: {frames} frames; {result}"
    angle = total_angle(render.trajectory)
    low, high = needed_frame_range(angle, plan.aligned_frames)
    if plan.adjustment == "bounce":
        why = (f"needs at least max({MIN_OUTPUT_FRAMES}, ceil(angle / {MAX_ANGLE_PER_FRAME}) + 1) = "
               f"{max(low, MIN_OUTPUT_FRAMES)} frames, so the video plays forward and back")
    else:
        why = f"allows at most floor(angle / {MIN_ANGLE_PER_FRAME}) + 1 = {high} frames, so the video is subsampled"
    return (f"{video.name}: {frames} frames; {trajectory_label} turns the camera {angle:.1f} deg in all and upstream's "
            f"adaptive rule {why}: {result}. --no-adaptive-frames keeps the video's own {plan.aligned_frames} frames.")
