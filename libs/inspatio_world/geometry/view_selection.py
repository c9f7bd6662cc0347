"""Which source view each latent of a four-view image job is anchored on (upstream v1.5 `select_chunk_top3`).

An image job's source stream is not a video: every frame of a latent shows one of the input views.
Upstream v1.5 scores each view by how many target pixels it covers (its render's known mask, summed
over the frames of the latent) and, per block of three latents:

1. ranks the four views by their coverage summed over the block (ties: lower view index first) and
   keeps the top three;
2. assigns those three views one per latent, choosing the permutation with the most coverage
   (ties: the lexicographically smallest tuple of view indices).

So a block always shows three different views, each once. The groups of frames per latent follow
the Wan VAE: frame 0 alone, then four frames each (models/mask_latents.py).

Layouts: `overlap_pixels` is [latents][views] int (latents a multiple of 3, exactly 4 views);
`choices` is [latents] view index; `chunk_views` is [blocks][3] the kept views, best first.
"""

from __future__ import annotations

from itertools import permutations
from typing import Sequence

from ..models.mask_latents import FRAMES_PER_LATENT, pixel_frames_of
from .frame_schedule import LATENTS_PER_BLOCK

ANCHOR_VIEWS = 4  # upstream's selection is defined for exactly four views


def latent_frame_groups(frames: int) -> list[range]:
    """The frames each latent of a `frames`-frame video is encoded from: [0], [1-4], [5-8], ...; as
    upstream v1.5, a short last group counts as a latent (v1.5 pads its frames to 1 + 4k anyway)."""
    if frames < 1:
        raise ValueError(f"frame count must be positive, got {frames}")
    groups = []
    for latent in range(1 + -(-(frames - 1) // FRAMES_PER_LATENT)):
        span = pixel_frames_of(slice(latent, latent + 1))
        groups.append(range(span.start, min(span.stop, frames)))
    return groups


def select_chunk_top3(overlap_pixels: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """(view per latent, the three views kept per block); see the module docstring."""
    if len(overlap_pixels) % LATENTS_PER_BLOCK or any(len(row) != ANCHOR_VIEWS for row in overlap_pixels):
        raise ValueError(
            f"view selection needs whole blocks of {LATENTS_PER_BLOCK} latents and {ANCHOR_VIEWS} views per latent, "
            f"got {len(overlap_pixels)} latents with {sorted({len(row) for row in overlap_pixels})} views"
        )
    choices: list[int] = []
    chunk_views: list[list[int]] = []
    for start in range(0, len(overlap_pixels), LATENTS_PER_BLOCK):
        block = [[int(v) for v in row] for row in overlap_pixels[start : start + LATENTS_PER_BLOCK]]
        totals = [sum(row[view] for row in block) for view in range(ANCHOR_VIEWS)]
        kept = sorted(range(ANCHOR_VIEWS), key=lambda view: (-totals[view], view))[:LATENTS_PER_BLOCK]
        best = min(permutations(kept), key=lambda order: (-sum(block[i][view] for i, view in enumerate(order)), order))
        choices.extend(best)
        chunk_views.append(kept)
    return choices, chunk_views


def latent_coverage(view_pixels: Sequence[Sequence[int]], frames: int) -> list[list[int]]:
    """Per-frame coverage [frames][views] -> per-latent coverage [latents][views] (sums over each group)."""
    if len(view_pixels) != frames:
        raise ValueError(f"coverage has {len(view_pixels)} frames, expected {frames}")
    views = len(view_pixels[0]) if frames else 0
    return [[sum(int(view_pixels[f][v]) for f in group) for v in range(views)] for group in latent_frame_groups(frames)]
