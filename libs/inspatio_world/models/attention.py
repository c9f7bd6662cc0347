"""Dense (unmasked) multi-head attention behind one function, with a pluggable kernel.

Layout at this boundary: q, k, v and the result are [B, L, H, D] (tokens, then heads).
Kernels: PyTorch SDPA everywhere; flash-attn 3 (Hopper) or 2 on CUDA for bf16/fp16 inputs
when installed. Different kernels agree only to accumulation-order rounding.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

import torch
import torch.nn.functional as F

from .. import envvars

BACKENDS = ("sdpa", "flash2", "flash3")


@lru_cache(maxsize=None)
def _flash_function(backend: str):
    module = {"flash3": "flash_attn_interface", "flash2": "flash_attn"}[backend]
    try:
        return importlib.import_module(module).flash_attn_func
    except Exception:  # not installed, or built for another torch/CUDA
        return None


def _flash3_supported() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


@lru_cache(maxsize=None)
def resolve_backend(requested: str | None = None) -> str:
    """The kernel used for CUDA half-precision inputs; `requested` defaults to $INSPATIO_ATTENTION."""
    requested = requested or envvars.get(envvars.ATTENTION)
    if requested == "auto":
        if _flash3_supported() and _flash_function("flash3") is not None:
            return "flash3"
        if torch.cuda.is_available() and _flash_function("flash2") is not None:
            return "flash2"
        return "sdpa"
    if requested not in BACKENDS:
        raise ValueError(f"{envvars.ATTENTION.name}={requested!r}: expected auto or one of {BACKENDS}")
    if requested != "sdpa" and _flash_function(requested) is None:
        raise RuntimeError(f"attention backend {requested!r} requested but its package is not importable")
    return requested


_selected: str | None = None


def selected_backend() -> str:
    """The process-wide kernel choice, resolved once (a plain global, so torch.compile folds it)."""
    global _selected
    if _selected is None:
        _selected = resolve_backend()
    return _selected


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √D) v over all keys (no mask); [B, Lq, H, D] x [B, Lk, H, D] -> [B, Lq, H, D]."""
    backend = selected_backend()
    if backend != "sdpa" and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        out = _flash_function(backend)(q, k, v)
        return out[0] if isinstance(out, tuple) else out
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)
