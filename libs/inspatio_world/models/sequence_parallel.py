"""Sequence-parallel (Ulysses-style) DiT passes: one pass spread over the P processes of a group.

Every rank holds all weights and runs the same sampler on the same inputs and noise. Through the
blocks each rank keeps a contiguous 1/P of the tokens. Self-attention needs every token, so q, k and
v go by one all-to-all from (local tokens, all N heads) to (all tokens, N/P heads): attention and
the KV cache then work on this rank's heads only (cache memory / P), and the result goes back by a
second all-to-all to (local tokens, all heads) for the output projection. Norms, cross-attention
and the feed-forward act per token: purely local. The head's output tokens are gathered, so every
rank ends the pass with the whole flow and the ranks stay identical.

The exchange is one opaque custom op (`inspatio::all_to_all`): torch.compile never traces a
collective, and a CUDA graph captures the NCCL calls like any other kernel. Gloo (CPU, tests) and
NCCL both implement `all_to_all_single`.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

_GROUPS: dict[str, dist.ProcessGroup] = {}  # custom ops take strings, not process groups


@torch.library.custom_op("inspatio::all_to_all", mutates_args=())
def _all_to_all(x: torch.Tensor, group: str) -> torch.Tensor:
    out = x.new_empty(x.shape)  # contiguous, whatever x's strides
    dist.all_to_all_single(out, x.contiguous(), group=_GROUPS[group])
    return out


@_all_to_all.register_fake
def _(x, group):
    return x.new_empty(x.shape)


@dataclass(frozen=True)
class SequenceShards:
    """This process's place in a sequence-parallel group (plain values, so compiled code can guard on them)."""

    group: str  # key of the registered process group
    rank: int
    size: int

    @classmethod
    def of_group(cls, group: dist.ProcessGroup | None = None) -> "SequenceShards":
        """Shards over `group` (default: the whole world), registered for the exchange op."""
        group = group or dist.group.WORLD
        key = next((k for k, g in _GROUPS.items() if g is group), f"sp{len(_GROUPS)}")
        _GROUPS[key] = group
        return cls(key, dist.get_rank(group), dist.get_world_size(group))

    def span(self, tokens: int) -> slice:
        """The contiguous token rows this rank keeps."""
        if tokens % self.size:
            raise ValueError(f"{tokens} tokens do not split evenly over {self.size} sequence-parallel ranks")
        part = tokens // self.size
        return slice(self.rank * part, (self.rank + 1) * part)

    def exchange(self, x: torch.Tensor) -> torch.Tensor:
        """x [P, ...]: chunk j goes to rank j; returns [P, ...] whose chunk i came from rank i."""
        return _all_to_all(x, self.group)

    def tokens_to_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L/P, N, D] (local tokens, all heads) -> [B, L, N/P, D] (all tokens, this rank's heads)."""
        b, local, n, d = x.shape
        p = self.size
        send = x.unflatten(2, (p, n // p)).permute(2, 0, 1, 3, 4).contiguous()
        received = self.exchange(send)  # [P, B, L/P, N/P, D]: rank i's tokens, in token order
        return received.permute(1, 0, 2, 3, 4).reshape(b, p * local, n // p, d)

    def heads_to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, N/P, D] (all tokens, this rank's heads) -> [B, L/P, N, D] (local tokens, all heads)."""
        b, tokens, h, d = x.shape
        p = self.size
        send = x.unflatten(1, (p, tokens // p)).transpose(0, 1).contiguous()
        received = self.exchange(send)  # [P, B, L/P, N/P, D]: rank i's heads, in head order
        return received.permute(1, 2, 0, 3, 4).reshape(b, tokens // p, p * h, d)

    def gather_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L/P, C] -> [B, L, C] on every rank (an all-to-all sending the same chunk to all)."""
        received = self.exchange(x.expand(self.size, *x.shape).contiguous())  # [P, B, L/P, C]
        return received.transpose(0, 1).flatten(1, 2)


def _loopback_interface() -> str | None:
    names = {name for _, name in socket.if_nameindex()}
    return next((name for name in ("lo", "lo0") if name in names), None)  # Linux, macOS


def _worker(rank: int, size: int, backend: str, rendezvous: str, fn: Callable, args: tuple) -> None:
    # The transport's own sockets on the loopback interface too: nothing listens beyond this host.
    interface = _loopback_interface()
    if interface is not None:
        os.environ.setdefault("NCCL_SOCKET_IFNAME" if backend == "nccl" else "GLOO_SOCKET_IFNAME", interface)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    device = torch.device("cuda", rank) if backend == "nccl" else None
    dist.init_process_group(backend, init_method=f"file://{rendezvous}", rank=rank, world_size=size, device_id=device)
    try:
        fn(SequenceShards.of_group(), *args)
    finally:
        dist.destroy_process_group()


def run_in_processes(fn: Callable, size: int, backend: str, *args) -> None:
    """Run `fn(shards, *args)` in `size` fresh processes forming one group on this host (they meet
    through a file, not a TCP server); with NCCL, rank r on cuda:r. `fn` must be a module-level
    function (it is pickled); raises if any rank fails."""
    with tempfile.TemporaryDirectory(prefix="inspatio-sp-") as folder:
        mp.spawn(_worker, args=(size, backend, os.path.join(folder, "rendezvous"), fn, args), nprocs=size, join=True)
