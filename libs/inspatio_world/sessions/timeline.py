"""Which source frame is under each output position of a live session (its time policy).

A session has no fixed length, so time must go on when the source runs out:

* bounce: 0..n-1, n-2..0, 1.. (geometry/frame_schedule.bounce_indices, as a job's adaptive frames);
* freeze: 0..n-1, then the last frame for ever (time stops where the source ran out).

Both run 0..n-1 first, so a session's first n positions use the same source frames as a job whose
trajectory has one camera per source frame and adaptive frames off.
"""

from __future__ import annotations

from ..geometry.frame_schedule import bounce_indices

BOUNCE, FREEZE = "bounce", "freeze"
TIME_POLICIES = (BOUNCE, FREEZE)


def source_frames(n_source: int, positions: int, policy: str = BOUNCE) -> list[int]:
    """The source frame of each of `positions` output positions over an `n_source`-frame source."""
    if n_source < 1:
        raise ValueError(f"the source needs at least one frame, got {n_source}")
    if policy not in TIME_POLICIES:
        raise ValueError(f"time policy {policy!r}: choose from {TIME_POLICIES}")
    if policy == FREEZE:
        return [min(t, n_source - 1) for t in range(positions)]
    # bounce_indices subsamples when asked for fewer positions than frames: ask for more, keep the start
    return bounce_indices(n_source, max(positions, n_source + 1))[:positions]
