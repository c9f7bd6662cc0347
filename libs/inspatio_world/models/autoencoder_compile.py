"""Speed options of the autoencoders: torch.compile of their per-chunk steps
(INSPATIO_COMPILE_AUTOENCODERS) and channels-last convolutions (INSPATIO_AUTOENCODER_CHANNELS_LAST).
Their `auto` defaults take what paid on an H200 (README, Performance, "Faster autoencoders"): on
CUDA both models compiled, the Wan VAE channels-last; on the CPU eager and standard layout.

The streams run the Wan VAE one latent at a time (encoder: 1 frame at the video start, then 4;
decoder: 1 latent) and TAEHV one pushed chunk at a time, and pass each step its causal cache as
explicit tensors. A video's first chunk (empty cache) runs eager: it comes once per video and
would need a graph of its own. Every later chunk has one signature per frame size, so a compiled
step compiles once per frame size: never again per block or per video. Graphs are static
(`dynamic=False`); Inductor fuses the elementwise chains around the convolutions (RMS norm, SiLU,
cache concatenation and padding). Eager bf16/fp16 rounding is kept (compile_settings.py): outputs differ from eager only
by reduction order, which `inspatio bench generator --compile-autoencoders` reports.

Channels-last: cuDNN runs its NHWC/NDHWC kernels when the weights are in that layout, and the
activations follow. The Wan VAE mixes 3-D and per-frame 2-D convolutions, so each weight gets the
layout of its rank (`Module.to(memory_format=...)` refuses that mix).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import torch

from .compile_settings import configure_compile

# torch.compile modes that suit a step whose caches are fed back in: CUDA-graph modes
# ("reduce-overhead") would overwrite a replay's outputs, the next step's cache, on the next replay.
MODES = ("default", "max-autotune-no-cudagraphs")
# INSPATIO_COMPILE_AUTOENCODERS values -> mode (None: eager); "auto" is resolved per device
SETTINGS = {"auto": None, "0": None, "1": "default", "max-autotune": "max-autotune-no-cudagraphs"}
# INSPATIO_AUTOENCODER_CHANNELS_LAST values -> the models that get channels-last weights
CHANNELS_LAST_SETTINGS = {"auto": ("wan_vae",), "0": (), "1": ("wan_vae", "taehv")}

F = TypeVar("F", bound=Callable)


def _checked(name: str, value: str, allowed) -> str:
    value = value.strip()
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def mode_from_setting(name: str, value: str, device: torch.device) -> str | None:
    """The compile mode an INSPATIO_COMPILE_AUTOENCODERS value asks for on `device` (auto: Inductor's
    default mode on CUDA, eager elsewhere); a typo stops, naming the variable."""
    value = _checked(name, value, SETTINGS)
    if value == "auto":
        return "default" if device.type == "cuda" else None
    return SETTINGS[value]


def channels_last_models(name: str, value: str, device: torch.device) -> tuple[str, ...]:
    """The autoencoders ("wan_vae", "taehv") an INSPATIO_AUTOENCODER_CHANNELS_LAST value puts in
    channels-last on `device` (auto: the Wan VAE on CUDA, none elsewhere)."""
    value = _checked(name, value, CHANNELS_LAST_SETTINGS)
    if value == "auto" and device.type != "cuda":
        return ()
    return CHANNELS_LAST_SETTINGS[value]


def compile_step(step: F, mode: str | None, starts_video: Callable[[Any], bool], backend: str = "inductor") -> F:
    """`step(chunk, past)` compiled in `mode` (one of MODES), or `step` itself for None (eager);
    chunks whose `past` `starts_video` run eager. `backend` "aot_eager" traces and guards as
    Inductor would but runs eager kernels (CPU tests: no C++ build)."""
    if mode is None:
        return step
    if mode not in MODES:
        raise ValueError(f"autoencoder compile mode {mode!r}: choose from {MODES}")
    configure_compile()
    options = {"mode": mode} if backend == "inductor" else {}
    compiled = torch.compile(step, backend=backend, dynamic=False, fullgraph=True, **options)

    def run(chunk: torch.Tensor, past):
        if starts_video(past):
            return step(chunk, past)
        return compiled(in_standard_layout(chunk), past)

    return run  # type: ignore[return-value]


def use_channels_last(model: torch.nn.Module, channels_last: bool = True) -> None:
    """Put every convolution weight of `model` in channels-last (NHWC, NDHWC) or back in the standard layout."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            layout = {4: torch.channels_last, 5: torch.channels_last_3d}[module.weight.dim()] if channels_last else torch.contiguous_format
            module.weight.data = module.weight.data.contiguous(memory_format=layout)


def in_standard_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` with row-major strides, copied only when it has others. A compiled step guards on its
    input's strides (size-1 dimensions too), and a chunk cut from a pushed block has the block's
    strides: without this, a 9-frame first block and the 12-frame ones would compile twice."""
    strides, step = [], 1
    for size in reversed(x.shape):
        strides.append(step)
        step *= max(size, 1)
    return x if x.stride() == tuple(reversed(strides)) else x.clone(memory_format=torch.contiguous_format)
