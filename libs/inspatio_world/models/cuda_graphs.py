"""Replaying DiT passes from captured CUDA graphs (no per-kernel CPU launch cost).

The block loop has only four pass shapes (context of 3 or 6 frames, denoising reading 3 or 6
cached frames), each with fixed tensor sizes and a fixed KV-cache tensor, so each is captured once
and replayed: inputs are copied into static buffers, the graph runs, the output is copied out.
The kernels are the same as without graphs, so results are identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .dit import CausalDiT
from .kv_cache import KVCache

WARMUP_RUNS = 2  # eager runs on a side stream before capture (compilation, cuBLAS workspaces)


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: dict[str, torch.Tensor]
    output: torch.Tensor


class GraphedDiT:
    """Calls `dit(...)` through one CUDA graph per distinct pass; same signature as `CausalDiT.forward`."""

    def __init__(self, dit: CausalDiT) -> None:
        self.dit = dit
        self.config = dit.config
        self._graphs: dict[tuple, _Captured] = {}
        self._pool = None

    def embed_text(self, prompt_embeds: torch.Tensor) -> torch.Tensor:
        return self.dit.embed_text(prompt_embeds)

    def __call__(self, x, timestep, text, render=None, cache: KVCache | None = None, cache_mode="none", cache_length=0, time_offset=0):
        tensors = {"x": x, "timestep": timestep, "text": text}
        if render is not None:
            tensors["render"] = render
        key = (
            tuple((name, tuple(t.shape), t.dtype) for name, t in tensors.items()),
            id(cache), cache_mode, cache_length, time_offset,
        )  # fmt: skip
        captured = self._graphs.get(key)
        if captured is None:
            captured = self._capture(tensors, dict(cache=cache, cache_mode=cache_mode, cache_length=cache_length, time_offset=time_offset))
            self._graphs[key] = captured
        for name, tensor in tensors.items():
            captured.inputs[name].copy_(tensor)
        captured.graph.replay()
        return captured.output.clone()  # the static output is overwritten by the next replay

    def _capture(self, tensors: dict[str, torch.Tensor], options: dict) -> _Captured:
        inputs = {name: t.clone() for name, t in tensors.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self.dit(**inputs, **options)
        torch.cuda.current_stream().wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()  # passes never overlap, so they share memory
        graph = torch.cuda.CUDAGraph()
        # A sequence-parallel pass captures NCCL calls; NCCL's watchdog thread may meanwhile query the
        # warm-up's events, which the default ("global") mode forbids to every thread.
        mode = "thread_local" if self.dit.shards is not None else "global"
        with torch.cuda.graph(graph, pool=self._pool, capture_error_mode=mode):
            output = self.dit(**inputs, **options)
        return _Captured(graph, inputs, output)

    def reset(self) -> None:
        """Drop every graph (e.g. after the KV cache was reallocated)."""
        self._graphs.clear()
