"""A live session's generator inputs: source, render and mask videos whose frames exist only on demand.

`SessionScene` holds what never changes in a session (the depth bundle's frames, depths, intrinsics
and source cameras, and the source video at the generation size). `SessionFeed` gives the generator
(pipeline/generator.py GenerationRequest) three duck-typed [T, C, H, W] videos: the render and mask
are rendered by `ensure(n)` (the request's `ensure_frames`) in chunks of the renderer's size aligned
to position 0, from the cameras the session has at that moment; the source follows the timeline.
Frames the generator has read past are dropped, so a session holds a few chunks, never T frames.

The numbers are a job's: the same renderer calls on the same chunks (stages/render.py RenderWork),
the same soft z-buffer scale rule (computed once, over the cameras known when block 0 is rendered)
and the same uint8 round trip and conversion (stages/render_feed.py RenderFeed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..geometry.poses import scale_intrinsic, source_c2w_from_w2c
from ..geometry.warp_render import DEFAULT_CHUNK_FRAMES, iter_warp_render, log_depth_max, mask_to_uint8, render_to_uint8
from ..media.dataset_inputs import load_source_video, to_mask_values, to_render_values
from ..media.decode import images_to_frames
from ..stages.artifacts import fetch
from ..stages.depth import load_depth_bundle
from ..store.base import ObjectStore


@dataclass(frozen=True)
class SessionScene:
    frames: torch.Tensor  # uint8 [N, 3, H, W]: the renderer's colours (the bundle's frames)
    depths: torch.Tensor  # float32 [N, H, W] on the render device
    K: torch.Tensor  # [3, 3] render-size intrinsics (frame 0's, as a job)
    source_c2w: torch.Tensor  # float32 [N, 4, 4] on the render device
    source: torch.Tensor  # float32 [N, 3, H, W] in [-1, 1]: the generator's source video
    fps: float

    @property
    def count(self) -> int:
        return min(len(self.depths), len(self.source))

    @property
    def height(self) -> int:
        return self.depths.shape[1]

    @property
    def width(self) -> int:
        return self.depths.shape[2]

    def source_w2c(self, frame: int) -> np.ndarray:
        """The source camera of `frame` as a float64 w2c (a held position's camera)."""
        return np.linalg.inv(self.source_c2w[frame].double().cpu().numpy())

    def centre(self) -> np.ndarray:
        from .cameras import scene_centre

        return scene_centre(self.depths[0].cpu().numpy(), self.source_c2w[0].double().cpu().numpy())


def load_scene(store: ObjectStore, video_key: str, depth_key: str, folder: Path, device: torch.device) -> SessionScene:
    """The scene of a video and its depth bundle, read as a job's render stage reads them."""
    bundle = load_depth_bundle(fetch(store, depth_key, folder))
    depths = bundle.depth.to(device)
    height, width = depths.shape[1:]
    source_c2w = source_c2w_from_w2c(bundle.extrinsic_w2c.numpy(), device=device)
    K = scale_intrinsic(bundle.intrinsics[0].to(device), width, height)
    source = load_source_video(fetch(store, video_key, folder, "video"), size=(height, width))
    return SessionScene(bundle.frames.permute(0, 3, 1, 2), depths, K, source_c2w, source, bundle.video.fps)


class LazyVideo:
    """A [T, C, H, W] video for GenerationRequest: `video[a:b]` stacks frames [a, b) got from `frame(t)`;
    frames before a are forgotten (the generator reads forward only)."""

    def __init__(self, shape: tuple[int, int, int, int], frame: Callable[[int], torch.Tensor]) -> None:
        self.shape = torch.Size(shape)
        self._frame = frame

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> torch.Tensor:
        if not isinstance(key, slice):
            raise TypeError("a session video is read by slices of frames")
        return torch.stack([self._frame(t) for t in range(*key.indices(self.shape[0]))])


class SessionFeed:
    """Source, render and mask of one generation; `ensure(n)` renders positions [0, n)."""

    def __init__(self, scene: SessionScene, timeline: list[int], targets: Callable[[slice], np.ndarray],
                 known_cameras: Callable[[], int], chunk_frames: int = DEFAULT_CHUNK_FRAMES) -> None:  # fmt: skip
        """`targets(span)`: the w2c [n, 4, 4] of positions `span` (fixing them); `known_cameras()`: how many
        positions have a camera given so far (the soft z-buffer's scale spans them)."""
        self.scene, self.timeline = scene, timeline
        self._targets, self._known = targets, known_cameras
        self._chunk = chunk_frames
        total = len(timeline)
        shape = (total, 3, scene.height, scene.width)
        self._render: dict[int, torch.Tensor] = {}
        self._mask: dict[int, torch.Tensor] = {}
        self.source = LazyVideo(shape, lambda t: scene.source[timeline[t]])
        self.render = LazyVideo(shape, lambda t: self._take(self._render, t))
        self.mask = LazyVideo(shape, lambda t: self._take(self._mask, t))
        self.rendered = 0  # positions [0, rendered) are rendered
        self.depth_max: torch.Tensor | None = None
        self.seconds = 0.0  # spent rendering since the last `take_seconds`

    def ensure(self, n: int) -> None:
        """Render until positions [0, n) exist (GenerationRequest.ensure_frames)."""
        while self.rendered < min(n, len(self.timeline)):
            self._next_chunk()

    def take_seconds(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def _take(self, frames: dict[int, torch.Tensor], t: int) -> torch.Tensor:
        for old in [k for k in frames if k < t]:
            del frames[old]
        if t not in frames:
            raise RuntimeError(f"render frame {t} was read before it was rendered (or after it was dropped)")
        return frames[t]

    def _inputs(self, span: slice) -> tuple[torch.Tensor, ...]:
        scene = self.scene
        index = torch.tensor(self.timeline[span])
        targets = torch.as_tensor(np.linalg.inv(self._targets(span)), dtype=torch.float32, device=scene.depths.device)
        return scene.frames[index], scene.depths[index], scene.source_c2w[index], targets

    def _next_chunk(self) -> None:
        start = time.perf_counter()
        scene = self.scene
        if self.depth_max is None:  # block 0: over every camera known now, and the first chunk's
            known = slice(0, min(max(self._known(), self._chunk), len(self.timeline)))
            _, depths, source_c2w, targets = self._inputs(known)
            self.depth_max = log_depth_max(depths, scene.K, source_c2w, targets, self._chunk)
        span = slice(self.rendered, min(self.rendered + self._chunk, len(self.timeline)))
        frames, depths, source_c2w, targets = self._inputs(span)
        ((_, render, mask),) = iter_warp_render(frames, depths, scene.K, source_c2w, targets, self.depth_max, self._chunk)
        # the uint8 round trip and conversion of a job's render file (stages/render.py, render_feed.py)
        render, mask = render_to_uint8(render).cpu(), mask_to_uint8(mask)[..., 0].cpu() > 0
        render = to_render_values(images_to_frames(render))
        mask = to_mask_values(images_to_frames((mask.to(torch.uint8) * 255)[..., None].expand(*mask.shape, 3)))
        for i, t in enumerate(range(span.start, span.stop)):
            self._render[t], self._mask[t] = render[i], mask[i]
        self.rendered = span.stop
        self.seconds += time.perf_counter() - start
