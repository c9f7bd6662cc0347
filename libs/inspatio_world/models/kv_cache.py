"""Per-layer key/value cache of the block-causal DiT, preallocated once and reused in place.

Layout: [layers, B, tokens, N, D] (N: this rank's heads in a sequence-parallel run); keys are stored after RoPE. A context ("write") pass stores its
keys at rows [0, L). A denoising ("read") pass attends over rows [0, n) plus its own keys; it puts
its own keys in the scratch rows [n, n+L) so attention reads one contiguous slice instead of a
concatenated copy (same values, same order as upstream's torch.cat).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LayerCache:
    k: torch.Tensor  # [B, capacity, N, D]
    v: torch.Tensor
    mode: str  # "write" or "read"
    length: int  # cached rows a read pass attends over

    def attend_keys(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store as the mode says and return the keys/values this pass attends over."""
        new = k.shape[1]
        start = 0 if self.mode == "write" else self.length
        end = start + new
        if end > self.k.shape[1]:
            raise ValueError(f"KV cache holds {self.k.shape[1]} tokens; this pass needs {end}")
        self.k[:, start:end] = k
        self.v[:, start:end] = v
        if self.mode == "write":
            return k, v
        return self.k[:, :end], self.v[:, :end]


class KVCache:
    def __init__(self, num_layers: int, batch: int, capacity: int, num_heads: int, head_dim: int, dtype, device) -> None:
        shape = (num_layers, batch, capacity, num_heads, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def layer(self, index: int, mode: str, length: int = 0) -> LayerCache:
        if mode not in ("write", "read"):
            raise ValueError(f"cache mode {mode!r}: expected 'write' or 'read'")
        return LayerCache(self.k[index], self.v[index], mode, length)

    def zero_(self) -> None:
        self.k.zero_()
        self.v.zero_()

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()
