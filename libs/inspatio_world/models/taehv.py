"""TAEHV, the tiny causal video autoencoder (checkpoint `taew2_1.pth`), written from the spec (§7).

It maps RGB video to the DiT's normalized Wan latent space and back, as a fast stand-in for the
Wan VAE (`--use_tae`). No latent mean/std is applied around it.

Layouts (N batch, T frames, C channels, H W height/width), all NTCHW:
* frames:  [N, T, 3, H, W], values in [0, 1], H and W multiples of 8 (times patch_size);
* latents: [N, ceil(T/4), 16, H/8, W/8]; latent j summarizes frames 4j..4j+3 (and, causally, all
  earlier ones). Decoding N latents gives 4N frames of which the first 3 are dropped: 4N-3.
Inside the encoder/decoder Sequentials, activations are flattened to [N*T, C, H, W] so that
per-frame layers are plain 2D ops; only MemBlock and TPool look across time.

Time handling, all causal:
* MemBlock adds its own input at the previous frame (zeros before the first frame);
* TPool concatenates `stride` consecutive frames along channels, earliest first, then a 1x1 conv;
* TGrow does a 1x1 conv to `stride`x channels and splits them into `stride` consecutive frames.
Because nothing looks ahead, a video can be processed in consecutive chunks that carry each
MemBlock's last input frame and each TPool's not-yet-pooled frames (`EncoderStream`,
`DecoderStream`); the concatenated chunk outputs equal a whole-video pass.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .autoencoder_compile import compile_step
from .checkpoints import load_into, read_state_dict

IMAGE_CHANNELS = 3
ENCODER_WIDTH = 64  # fixed by the released checkpoints, unlike the decoder widths (n_f)
STAGES = 3  # encoder and decoder each have 3 resolution stages of 3 MemBlocks


@dataclass(frozen=True)
class TAEHVConfig:
    """Architecture of a TAEHV checkpoint; the defaults are `taew2_1` (Wan 2.1 latents)."""

    latent_channels: int = 16
    patch_size: int = 1
    encoder_time_downscale: tuple[bool, ...] = (True, True, False)
    decoder_time_upscale: tuple[bool, ...] = (False, True, True)
    decoder_space_upscale: tuple[bool, ...] = (True, True, True)
    n_f: tuple[int, ...] = (256, 128, 64, 64)  # decoder widths: 3 stages, then the output conv

    @classmethod
    def from_dict(cls, raw: Mapping, **overrides) -> "TAEHVConfig":
        """From a `model_config.json`-style dict; unknown keys (e.g. `checkpoint_name`) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values.update(overrides)
        for key in ("encoder_time_downscale", "decoder_time_upscale", "decoder_space_upscale", "n_f"):
            if key in values:
                values[key] = tuple(values[key])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        for key in ("encoder_time_downscale", "decoder_time_upscale", "decoder_space_upscale"):
            if len(getattr(self, key)) != STAGES:
                raise ValueError(f"{key} needs {STAGES} entries, got {getattr(self, key)!r}")
        if len(self.n_f) != STAGES + 1:
            raise ValueError(f"n_f needs {STAGES + 1} widths, got {self.n_f!r}")

    @property
    def t_downscale(self) -> int:
        return 2 ** sum(self.encoder_time_downscale)

    @property
    def t_upscale(self) -> int:
        return 2 ** sum(self.decoder_time_upscale)

    @property
    def frames_to_trim(self) -> int:
        """Leading decoded frames dropped so the output aligns with the Wan VAE's 4N-3 frames."""
        return self.t_upscale - 1


def conv3x3(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of the latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """ReLU(body(cat_channels(x, past)) + skip(x)); `past` is this block's input one frame earlier."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv3x3(n_in * 2, n_out), nn.ReLU(inplace=True),
            conv3x3(n_out, n_out), nn.ReLU(inplace=True),
            conv3x3(n_out, n_out),
        )  # fmt: skip
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TPool(nn.Module):
    """[N*T, C, H, W] -> [N*T/stride, C, H, W]: groups of `stride` frames merged by a 1x1 conv."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f * stride, n_f, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        return self.conv(x.reshape(nt // self.stride, self.stride * c, h, w))


class TGrow(nn.Module):
    """[N*T, C, H, W] -> [N*T*stride, C, H, W]: channel block k of a 1x1 conv becomes new frame k."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        return self.conv(x).reshape(nt * self.stride, c, h, w)


def build_encoder(config: TAEHVConfig) -> nn.Sequential:
    width = ENCODER_WIDTH
    layers: list[nn.Module] = [conv3x3(IMAGE_CHANNELS * config.patch_size**2, width), nn.ReLU(inplace=True)]
    for downscale in config.encoder_time_downscale:
        layers += [TPool(width, 2 if downscale else 1), conv3x3(width, width, stride=2, bias=False)]
        layers += [MemBlock(width, width) for _ in range(3)]
    layers.append(conv3x3(width, config.latent_channels))
    return nn.Sequential(*layers)


def build_decoder(config: TAEHVConfig) -> nn.Sequential:
    n_f = config.n_f
    layers: list[nn.Module] = [Clamp(), conv3x3(config.latent_channels, n_f[0]), nn.ReLU(inplace=True)]
    for stage, (time_up, space_up) in enumerate(zip(config.decoder_time_upscale, config.decoder_space_upscale)):
        layers += [MemBlock(n_f[stage], n_f[stage]) for _ in range(3)]
        layers += [
            nn.Upsample(scale_factor=2) if space_up else nn.Identity(),  # nearest
            TGrow(n_f[stage], 2 if time_up else 1),
            conv3x3(n_f[stage], n_f[stage + 1], bias=False),
        ]
    layers += [nn.ReLU(inplace=True), conv3x3(n_f[STAGES], IMAGE_CHANNELS * config.patch_size**2)]
    return nn.Sequential(*layers)


@dataclass
class CarriedState:
    """What one Sequential carries from a chunk of frames to the next; empty at the video start."""

    # MemBlock index -> its input at the chunk's last frame [N, C, H, W]
    past: dict[int, torch.Tensor] = field(default_factory=dict)
    # TPool index -> trailing frames that did not fill a group of `stride` yet [N, t < stride, C, H, W]
    unpooled: dict[int, torch.Tensor] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not self.past and not self.unpooled


def _as_frames(flat: torch.Tensor, n: int) -> torch.Tensor:
    # explicit T because view(n, -1, ...) is ambiguous for a chunk with no frames
    return flat.view(n, flat.shape[0] // n, *flat.shape[1:])


def apply_chunk(blocks: nn.Sequential, x: torch.Tensor, state: CarriedState) -> torch.Tensor:
    """Run `blocks` over the next chunk x [N, T, C, H, W] of a video, all frames at once, updating `state`.

    With a fresh state and the whole video as one chunk this is upstream's parallel mode. A chunk
    may come out with 0 frames (a TPool still waiting for frames); the result is then [N, 0, ...].
    """
    n = x.shape[0]
    h = x.flatten(0, 1)
    for index, block in enumerate(blocks):
        if isinstance(block, MemBlock):
            frames = _as_frames(h, n)
            previous = state.past.get(index)
            if previous is None:
                previous = frames.new_zeros(n, *frames.shape[2:])
            past = torch.cat([previous.unsqueeze(1), frames], 1)[:, : frames.shape[1]]  # shift time by one
            if frames.shape[1]:
                state.past[index] = frames[:, -1].clone()  # clone: don't keep the whole chunk alive
            h = block(h, past.flatten(0, 1))
        elif isinstance(block, TPool):
            frames = _as_frames(h, n)
            if index in state.unpooled:
                frames = torch.cat([state.unpooled.pop(index), frames], 1)
            usable = frames.shape[1] - frames.shape[1] % block.stride
            if usable < frames.shape[1]:
                state.unpooled[index] = frames[:, usable:].clone()
            h = block(frames[:, :usable].flatten(0, 1))
        else:  # per-frame layers; TGrow only multiplies the frame count
            h = block(h)
    return _as_frames(h, n)


class TAEHV(nn.Module):
    """Encoder and decoder Sequentials whose indices give the checkpoint keys (`encoder.{i}.…`)."""

    def __init__(self, config: TAEHVConfig = TAEHVConfig()) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.encoder = build_encoder(config)
        self.decoder = build_decoder(config)
        self.use_compiled_steps(None)

    def use_compiled_steps(self, mode: str | None, backend: str = "inductor") -> None:
        """Run the streams' chunks through torch.compile in `mode` (autoencoder_compile.py), or eager (None)."""
        self.compile_mode = mode
        self.encode_chunk = compile_step(functools.partial(apply_chunk, self.encoder), mode, CarriedState.is_empty, backend)
        self.decode_chunk = compile_step(functools.partial(apply_chunk, self.decoder), mode, CarriedState.is_empty, backend)

    def encode_video(self, frames: torch.Tensor, parallel: bool = True) -> torch.Tensor:
        """frames [N, T, 3, H, W] in [0, 1] -> latents [N, ceil(T/4), C, H/8, W/8].

        T is padded at the end to a multiple of 4 by repeating the last frame. parallel=False
        feeds one frame at a time (memory independent of T, slower); same result up to rounding.
        """
        stream = EncoderStream(self)
        if parallel:
            return stream.push(frames, last=True)
        chunks = frames.split(1, dim=1)
        return torch.cat([stream.push(chunk, last=k == len(chunks) - 1) for k, chunk in enumerate(chunks)], 1)

    def decode_video(self, latents: torch.Tensor, parallel: bool = True) -> torch.Tensor:
        """latents [N, T, C, h, w] -> frames [N, 4T-3, 3, 8h, 8w] clamped to [0, 1].

        parallel=False feeds one latent at a time; same result up to rounding.
        """
        stream = DecoderStream(self)
        if parallel:
            return stream.push(latents)
        return torch.cat([stream.push(latent) for latent in latents.split(1, dim=1)], 1)

    def to_encoder_input(self, frames: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(frames, self.config.patch_size) if self.config.patch_size > 1 else frames

    def from_decoder_output(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.patch_size > 1:
            x = F.pixel_shuffle(x, self.config.patch_size)
        return x.clamp(0, 1)


class EncoderStream:
    """Encodes one video fed as consecutive chunks of frames, carrying state between chunks.

    Each `push` returns the latents its frames complete ([N, t, C, h, w], t possibly 0); frames
    short of a group of 4 wait for the next chunk, so chunks of any length work (the pipeline
    pushes 12 frames per generator block and gets 3 latents). Mark the final chunk `last=True`:
    the video is then end-padded to a multiple of 4 frames like `encode_video`, and the stream
    closes. The concatenated outputs equal `encode_video` on the whole video.
    """

    def __init__(self, model: TAEHV) -> None:
        self.model = model
        self._state = CarriedState()
        self._frames_seen = 0
        self._last_frame: torch.Tensor | None = None
        self._closed = False

    def push(self, frames: torch.Tensor, last: bool = False) -> torch.Tensor:
        if self._closed:
            raise RuntimeError("EncoderStream: the video already ended (a chunk was pushed with last=True)")
        if frames.shape[1]:
            self._last_frame = frames[:, -1:].clone()
            self._frames_seen += frames.shape[1]
        if last:
            self._closed = True
            n_pad = -self._frames_seen % self.model.config.t_downscale
            if n_pad:
                frames = torch.cat([frames, self._last_frame.expand(-1, n_pad, -1, -1, -1)], 1)
        return self.model.encode_chunk(self.model.to_encoder_input(frames), self._state)


class DecoderStream:
    """Decodes one latent sequence fed as consecutive chunks of any length, carrying state.

    Each latent yields 4 frames; the first 3 frames of the whole stream are dropped once, so the
    first push of k latents returns 4k-3 frames and every later one 4k. The concatenated outputs
    equal `decode_video` on the whole sequence.
    """

    def __init__(self, model: TAEHV) -> None:
        self.model = model
        self._state = CarriedState()
        self._frames_to_trim = model.config.frames_to_trim

    def push(self, latents: torch.Tensor) -> torch.Tensor:
        frames = self.model.from_decoder_output(self.model.decode_chunk(latents, self._state))
        trim = min(self._frames_to_trim, frames.shape[1])
        self._frames_to_trim -= trim
        return frames[:, trim:]


def trim_tgrow_weights(model: TAEHV, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Checkpoints may store a stride-1 TGrow with the rows of a stride-2 one (`decoder.7` in
    taew2_1.pth); keep the last rows, i.e. the channels of the last output timestep, as upstream."""
    state = dict(state)
    for index, layer in enumerate(model.decoder):
        key = f"decoder.{index}.conv.weight"
        if isinstance(layer, TGrow) and key in state:
            rows = layer.conv.weight.shape[0]
            if state[key].shape[0] > rows:
                state[key] = state[key][-rows:]
    return state


def load_taehv(
    path: str | Path,
    config: TAEHVConfig = TAEHVConfig(),
    dtype: torch.dtype = torch.float16,
    device: str | torch.device = "cpu",
) -> TAEHV:
    """TAEHV weights from a `.pth` or `.safetensors` file (taew2_1.pth key names), in eval mode.

    Raises CheckpointError naming file and key for a missing file, missing/unknown key or wrong shape.
    The deployment runs it in fp16 (the pipeline's bf16 cast does not touch it).
    """
    with torch.device("meta"):  # skip random init: every value is overwritten
        model = TAEHV(config)
    model = model.to_empty(device="cpu")
    load_into(model, trim_tgrow_weights(model, read_state_dict(path)), str(path))
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
