"""Dense (unmasked) multi-head attention behind one function, with a pluggable kernel.

Layout at this boundary: q, k, v and the result are [B, L, H, D] (tokens, then heads).
Kernels: PyTorch SDPA everywhere (cuDNN on Hopper); on CUDA for bf16/fp16 inputs, when installed,
FlashAttention-4 (`flash-attn-4`, Dao-AILab's CuTe DSL kernels: SM90 and SM100), FlashAttention-3
(`flash_attn_interface`, Hopper) or FlashAttention-2. Different kernels agree only to
accumulation-order rounding (tests/gpu/test_attention_kernels.py measures it).

Self-attention and cross-attention choose separately: the 512-key cross-attention is fastest on
cuDNN at this model's shapes (README, Performance), so `auto` keeps it on SDPA.
"""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F

from .. import envvars
from .fp8_attention import fp8_attention, fp8_attention_supported

BACKENDS = ("sdpa", "flash2", "flash3", "flash4", "fp8")
_MODULES = {"flash4": "flash_attn.cute", "flash3": "flash_attn_interface", "flash2": "flash_attn"}
# Compute capabilities (major) each flash kernel has code for.
_CAPABILITIES = {"flash4": (9, 10), "flash3": (9,), "flash2": (8, 9, 10, 12)}
_AUTO_ORDER = ("flash4", "flash3", "flash2")


@lru_cache(maxsize=None)
def _flash_function(backend: str):
    try:
        return importlib.import_module(_MODULES[backend]).flash_attn_func
    except Exception:  # not installed, or built for another torch/CUDA
        return None


def _runs_here(backend: str) -> bool:
    if not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] not in _CAPABILITIES[backend]:
        return False
    return _flash_function(backend) is not None


@lru_cache(maxsize=None)
def resolve_backend(requested: str | None = None, variable: envvars.EnvVar = envvars.ATTENTION) -> str:
    """The kernel used for CUDA half-precision inputs; `requested` defaults to the variable's value."""
    requested = requested or envvars.get(variable)
    if requested == "auto":
        return next((backend for backend in _AUTO_ORDER if _runs_here(backend)), "sdpa")
    if requested not in BACKENDS:
        raise ValueError(f"{variable.name}={requested!r}: expected auto or one of {BACKENDS}")
    if requested == "fp8":
        if not fp8_attention_supported():
            raise RuntimeError(f"{variable.name}=fp8 needs Triton and a CUDA GPU with FP8 tensor cores (sm89+)")
        return requested
    if requested != "sdpa" and _flash_function(requested) is None:
        raise RuntimeError(f"attention backend {requested!r} requested but its package is not importable")
    return requested


def resolve_cross_backend() -> str:
    """Cross-attention's kernel: $INSPATIO_CROSS_ATTENTION, where `auto` means SDPA (measured fastest)."""
    requested = envvars.get(envvars.CROSS_ATTENTION)
    return "sdpa" if requested == "auto" else resolve_backend(requested, envvars.CROSS_ATTENTION)


_selected: dict[str, str] = {}


def selected_backends() -> dict[str, str]:
    """The process-wide kernel choices, resolved once (a plain global, so torch.compile folds them)."""
    if not _selected:
        _selected.update(self=resolve_backend(), cross=resolve_cross_backend())
    return _selected


@contextmanager
def backends_overridden(**kinds: str):
    """Within the block, the named kinds ("self", "cross") use these kernels. Eager code only:
    compiled graphs have the choice folded in. For measuring one kernel against another."""
    saved = dict(selected_backends())
    _selected.update(kinds)
    try:
        yield
    finally:
        _selected.update(saved)


@torch.library.custom_op("inspatio::flash_attention", mutates_args=())
def _flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backend: str) -> torch.Tensor:
    # An opaque op for torch.compile: dynamo does not trace into the kernels' Python (FA4 JIT-compiles).
    out = _flash_function(backend)(q, k, v)
    return out[0] if isinstance(out, tuple) else out


@_flash_attention.register_fake
def _(q, k, v, backend):
    return torch.empty_like(q)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kind: str = "self") -> torch.Tensor:
    """softmax(q kᵀ / √D) v over all keys (no mask); [B, Lq, H, D] x [B, Lk, H, D] -> [B, Lq, H, D].

    kind: "self" or "cross", which kernel choice applies.
    """
    backend = selected_backends()[kind]
    if backend == "fp8":
        return fp8_attention(q, k, v)
    if backend != "sdpa" and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        return _flash_attention(q, k, v, backend)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)
