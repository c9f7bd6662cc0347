"""Block-causal few-step sampler of InSpatio-World (upstream `CausalInferencePipeline.inference`).

Latents here are [B, F, C, H, W] (frames before channels), the pipeline's layout.
For each block of 3 latent frames: one context pass writes the KV cache from the source latents of
the block (plus, after the first block, the previous block's prediction), then 4 denoising passes
read it, re-noising the x0 prediction between steps. The block's output is the x0 of the last step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from ..stopping import StopCheck, go_on
from .cuda_graphs import GraphedDiT
from .dit import RENDER_CHANNELS, CausalDiT
from .kv_cache import KVCache
from .scheduler import FlowMatchSchedule


@dataclass(frozen=True)
class SamplerConfig:
    frames_per_block: int = 3
    denoising_steps: tuple[int, ...] = (1000, 750, 500, 250)
    warp_steps: bool = True
    denoise_time_offset: int = 6  # temporal RoPE position of the first noisy frame
    context_blocks: int = 2  # source latents of the block + the previous block's prediction


class NoiseSource(Protocol):
    def initial(self, shape: tuple[int, ...], dtype, device) -> torch.Tensor: ...

    def renoise(self, shape: tuple[int, ...], dtype, device) -> torch.Tensor: ...


class GeneratorNoise:
    """Draws from a torch.Generator in upstream's order: all initial noise first, then the re-noise per step."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def initial(self, shape, dtype, device) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=dtype, device=device)

    renoise = initial


class RecordedNoise:
    """Replays noise recorded elsewhere (e.g. an upstream run): initial [B, N, C, H, W], draws [k, B*F, C, H, W]."""

    def __init__(self, noise: torch.Tensor, renoise_draws: torch.Tensor) -> None:
        self.noise = noise
        self.draws = iter(renoise_draws)

    def initial(self, shape, dtype, device) -> torch.Tensor:
        if tuple(self.noise.shape) != tuple(shape):
            raise ValueError(f"recorded noise has shape {tuple(self.noise.shape)}, expected {tuple(shape)}")
        return self.noise.to(device=device, dtype=dtype)

    def renoise(self, shape, dtype, device) -> torch.Tensor:
        return next(self.draws).reshape(shape).to(device=device, dtype=dtype)


@dataclass(frozen=True)
class BlockInputs:
    """One block's conditioning, each [B, F, C, H, W] in the DiT dtype."""

    ref_latent: torch.Tensor  # source-video latents, 16 ch
    render_latent: torch.Tensor  # render-video latents, 16 ch
    mask_latent: torch.Tensor  # downsampled validity mask, 4 ch


class ConditioningSource(Protocol):
    """What the sampler reads: the prompt, the latent length, and each block's latents on demand
    (so a streaming pipeline can encode block b while block b-1 is being generated)."""

    prompt_embeds: torch.Tensor  # [B, text_len, text_dim]

    @property
    def num_frames(self) -> int: ...

    def block(self, span: slice) -> BlockInputs: ...


@dataclass(frozen=True)
class Conditioning:
    """Conditioning held as whole-video latents, all [B, N, C, H, W] in the DiT dtype."""

    prompt_embeds: torch.Tensor  # [B, text_len, text_dim]
    ref_latent: torch.Tensor
    render_latent: torch.Tensor
    mask_latent: torch.Tensor

    @property
    def num_frames(self) -> int:
        return min(self.ref_latent.shape[1], self.render_latent.shape[1], self.mask_latent.shape[1])

    def block(self, span: slice) -> BlockInputs:
        return BlockInputs(self.ref_latent[:, span], self.render_latent[:, span], self.mask_latent[:, span])


@dataclass
class StepTrace:
    """What one denoising call saw and predicted; kept only when tracing is asked for."""

    block: int
    step: int
    noisy: torch.Tensor
    x0: torch.Tensor


class BlockSampler:
    def __init__(
        self,
        dit: CausalDiT,
        config: SamplerConfig = SamplerConfig(),
        schedule: FlowMatchSchedule | None = None,
        cuda_graphs: bool = False,
    ) -> None:
        """`cuda_graphs` replays each pass shape from a captured CUDA graph (CUDA only; same results)."""
        self.dit = dit
        self._graphed = GraphedDiT(dit) if cuda_graphs else None
        self.config = config
        self.schedule = schedule or FlowMatchSchedule()
        steps = list(config.denoising_steps)
        self.timesteps = self.schedule.warped_steps(steps) if config.warp_steps else torch.tensor(steps, dtype=torch.float32)
        self._cache: KVCache | None = None

    @property
    def kv_cache_bytes(self) -> int:
        return self._cache.nbytes if self._cache is not None else 0

    def usable_frames(self, num_latent_frames: int) -> int:
        """Upstream generates only whole blocks: N - N % frames_per_block."""
        return num_latent_frames - num_latent_frames % self.config.frames_per_block

    def kv_cache(self, batch: int, tokens_per_frame: int, dtype, device) -> KVCache:
        """The cache, allocated once and reused while shape, dtype and device stay the same."""
        cfg = self.dit.config
        blocks = self.config.context_blocks + 1  # context frames + the scratch rows of a denoising pass
        capacity = blocks * self.config.frames_per_block * tokens_per_frame
        cache = self._cache
        if cache is None or cache.k.shape[1:4] != (batch, capacity, self.dit.cached_heads) or cache.k.dtype != dtype or cache.k.device != torch.device(device):
            cache = KVCache(cfg.num_layers, batch, capacity, self.dit.cached_heads, cfg.head_dim, dtype, device)
            self._cache = cache
            if self._graphed is not None:
                self._graphed.reset()  # captured graphs point at the old cache
        return cache

    @torch.no_grad()
    def blocks(self, cond: ConditioningSource, noise: NoiseSource, trace: list[StepTrace] | None = None,
               should_stop: StopCheck = go_on) -> Iterator[torch.Tensor]:  # fmt: skip
        """Yield each generated block's latents [B, frames_per_block, 16, H, W] as soon as it is done.
        `should_stop` is called before each block's conditioning and every denoising step
        (stopping.py): a cancelled call stops within one step, not at the block's end."""
        per_block = self.config.frames_per_block
        total = self.usable_frames(cond.num_frames)
        if total == 0:
            raise ValueError(f"need at least {per_block} latent frames, got {cond.num_frames}")
        first = cond.block(slice(0, per_block))
        dtype, device = first.ref_latent.dtype, first.ref_latent.device
        batch, _, channels, height, width = first.ref_latent.shape
        ph, pw = self.dit.config.patch_size[1:]
        tokens_per_frame = (height // ph) * (width // pw)
        cache = self.kv_cache(batch, tokens_per_frame, dtype, device)
        cache.zero_()
        text = self.dit.embed_text(cond.prompt_embeds)
        forward = self._graphed if self._graphed is not None and device.type == "cuda" else self.dit
        initial = noise.initial((batch, total, channels, height, width), dtype, device)
        timesteps = self.timesteps.to(device)

        previous = None
        for block, start in enumerate(range(0, total, per_block)):
            span = slice(start, start + per_block)
            should_stop()
            inputs = first if start == 0 else cond.block(span)
            context = _pad_channels(inputs.ref_latent)
            if previous is not None:
                context = torch.cat([context, _pad_channels(previous)], dim=1)
            forward(_to_model(context), torch.zeros(batch, dtype=torch.long, device=device), text, cache=cache, cache_mode="write")
            cached = context.shape[1] * tokens_per_frame
            render = _to_model(torch.cat([inputs.mask_latent, inputs.render_latent], dim=2))

            x = initial[:, span]
            for step, t in enumerate(timesteps):
                should_stop()
                flow = forward(
                    _to_model(x), t.expand(batch), text, render=render, cache=cache, cache_mode="read",
                    cache_length=cached, time_offset=self.config.denoise_time_offset,
                )
                flow = _from_model(flow).flatten(0, 1)
                frames = flow.shape[0]
                x0 = self.schedule.flow_to_x0(flow, x.flatten(0, 1), t.expand(frames))
                if trace is not None:
                    trace.append(StepTrace(block, step, x, x0.unflatten(0, x.shape[:2])))
                if step + 1 < len(timesteps):
                    eps = noise.renoise(tuple(x0.shape), dtype, device)
                    x = self.schedule.add_noise(x0, eps, timesteps[step + 1].expand(frames)).unflatten(0, x.shape[:2])
            previous = x0.unflatten(0, x.shape[:2])
            yield previous

    def generate(self, cond: ConditioningSource, noise: NoiseSource, trace: list[StepTrace] | None = None) -> torch.Tensor:
        """All blocks concatenated: [B, usable_frames, 16, H, W]."""
        return torch.cat(list(self.blocks(cond, noise, trace)), dim=1)


def _pad_channels(latent: torch.Tensor) -> torch.Tensor:
    """Append the 20 zero render channels a clean context frame carries ([B, F, 16, ...] -> [B, F, 36, ...])."""
    zeros = latent.new_zeros(*latent.shape[:2], RENDER_CHANNELS, *latent.shape[3:])
    return torch.cat([latent, zeros], dim=2)


def _to_model(latent: torch.Tensor) -> torch.Tensor:
    return latent.permute(0, 2, 1, 3, 4).contiguous()


def _from_model(latent: torch.Tensor) -> torch.Tensor:
    return latent.permute(0, 2, 1, 3, 4)
