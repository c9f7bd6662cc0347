"""The Wan2.1 video VAE (upstream `WanVAE_` + `WanVAEWrapper`): whole-video and streaming encode/decode.

Layouts:
* pixels: BCTHW in [-1, 1] going in (`encode`), BTCHW float32 coming out (`decode`);
* latents: BTCHW [B, L, z_dim, H/8, W/8], normalised as the pipeline does, float32 coming out.

Time: T pixel frames give L = 1 + (T-1)//4 latents (frame 0 alone, then groups of 4), and L latents
decode to 1 + 4(L-1) frames. Both directions are causal and run chunk by chunk with a cache of past
frames, exactly as upstream: the encoder on frame chunks [0], [1..4], [5..8], ..., the decoder one
latent at a time. `EncodeStream` / `DecodeStream` carry that cache between calls, so a video can be
encoded or decoded block by block and the concatenated results equal the whole-video results bit
for bit (the whole-video calls are one-chunk streams, and every layer sees the same shapes either way).
The batch runs as one tensor (upstream's wrapper loops over samples; identical maths).

Latent normalisation, as the pipeline: mean and 1/std are rounded to the working dtype first
(the reciprocal is computed in that dtype); encode gives (mu - mean) * inv_std, decode takes
z / inv_std + mean (a division by inv_std, not a multiplication by std).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .autoencoder_compile import compile_step
from .checkpoints import load_into, read_state_dict
from .wan_vae_blocks import CausalConv3d, Decoder3d, Encoder3d

FRAMES_PER_LATENT = 4  # after the first frame, which has a latent of its own

# The causal cache as explicit tensors, one entry per causal conv of the encoder (or decoder) in
# module order, None where the video has not reached the conv yet: a step's inputs and outputs.
Past = tuple[torch.Tensor | None, ...]
Step = Callable[[torch.Tensor, Past], tuple[torch.Tensor, Past]]

# Per-channel latent statistics of Wan2.1 (upstream WanVAE / WanVAEWrapper).
WAN21_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class WanVAEConfig:
    """`_video_vae(z_dim=16)` of upstream. `temperal_downsample` keeps upstream's spelling (config keys)."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temperal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    latent_mean: tuple[float, ...] = WAN21_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN21_LATENT_STD

    @classmethod
    def from_dict(cls, raw: dict, **overrides) -> "WanVAEConfig":
        """From a `model_config.json`-style dict; unknown keys are ignored, lists become tuples."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values.update(overrides)
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError(f"temperal_downsample needs {len(self.dim_mult) - 1} entries, got {self.temperal_downsample}")
        if sum(self.temperal_downsample) != 2:
            raise ValueError("the 4x time stride (1 + 4k frames per latent) needs exactly two temporal downsamples")
        if len(self.latent_mean) != self.z_dim or len(self.latent_std) != self.z_dim:
            raise ValueError(f"latent_mean and latent_std need z_dim={self.z_dim} values each")


class WanVAE(nn.Module):
    """Encoder, decoder and the two 1x1x1 convs between them; state-dict names equal `Wan2.1_VAE.pth`."""

    def __init__(self, config: WanVAEConfig = WanVAEConfig()) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        self.encoder = Encoder3d(c.dim, c.z_dim * 2, c.dim_mult, c.num_res_blocks, c.attn_scales, c.temperal_downsample, c.dropout)
        self.conv1 = CausalConv3d(c.z_dim * 2, c.z_dim * 2, 1)
        self.conv2 = CausalConv3d(c.z_dim, c.z_dim, 1)
        self.decoder = Decoder3d(c.dim, c.z_dim, c.dim_mult, c.num_res_blocks, c.attn_scales, c.temperal_downsample[::-1], c.dropout)
        # plain tuples, not submodules: the state-dict names stay those of the checkpoint
        self._encoder_convs = tuple(m for m in self.encoder.modules() if isinstance(m, CausalConv3d))
        self._decoder_convs = tuple(m for m in self.decoder.modules() if isinstance(m, CausalConv3d))
        self.use_compiled_steps(None)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv1.weight.device

    def latent_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, inv_std) as [1, z_dim, 1, 1, 1] in the working dtype; 1/std is computed in that dtype."""
        shape = (1, self.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.config.latent_mean, dtype=torch.float32, device=self.device).to(self.dtype)
        inv_std = 1.0 / torch.tensor(self.config.latent_std, dtype=torch.float32, device=self.device).to(self.dtype)
        return mean.view(shape), inv_std.view(shape)

    def encode_step(self, chunk: torch.Tensor, past: Past) -> tuple[torch.Tensor, Past]:
        """Pixels of one latent's frames (1 at the video start, then 4) -> its moments (mean ‖ logvar)."""
        cache = {conv: t for conv, t in zip(self._encoder_convs, past) if t is not None}
        moments = self.conv1(self.encoder(chunk, cache))
        return moments, tuple(cache.get(conv) for conv in self._encoder_convs)

    def decode_step(self, z: torch.Tensor, past: Past) -> tuple[torch.Tensor, Past]:
        """One latent [B, z_dim, 1, h, w], de-normalised -> its frames (1 for the video's first latent, then 4)."""
        cache = {conv: t for conv, t in zip(self._decoder_convs, past) if t is not None}
        frames = self.decoder(self.conv2(z), cache)
        return frames, tuple(cache.get(conv) for conv in self._decoder_convs)

    def use_compiled_steps(self, mode: str | None, backend: str = "inductor") -> None:
        """Run the streams' steps through torch.compile in `mode` (autoencoder_compile.py), or eager (None)."""
        self.compile_mode = mode
        self.run_encode_step: Step = compile_step(self.encode_step, mode, _starts_video, backend)
        self.run_decode_step: Step = compile_step(self.decode_step, mode, _starts_video, backend)

    def start_of_video(self, part: str) -> Past:
        """The empty cache of the encoder or decoder."""
        return (None,) * len(self._encoder_convs if part == "encoder" else self._decoder_convs)

    def encode_stream(self) -> "EncodeStream":
        return EncodeStream(self)

    def decode_stream(self, clamp: bool = True) -> "DecodeStream":
        return DecodeStream(self, clamp)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video BCTHW [B, 3, T, H, W] -> latents BTCHW float32 [B, 1 + (T-1)//4, z_dim, H/8, W/8].

        As upstream, frames after the last complete group of 4 are dropped.
        """
        usable = 1 + (video.shape[2] - 1) // FRAMES_PER_LATENT * FRAMES_PER_LATENT
        return self.encode_stream().push(video[:, :, :usable])

    def decode(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Latents BTCHW [B, L, z_dim, h, w] -> frames BTCHW float32 [B, 1 + 4(L-1), 3, 8h, 8w].

        Clamped to [-1, 1] like upstream `decode_to_pixel`; `clamp=False` gives the raw decoder output.
        """
        return self.decode_stream(clamp).push(latents)


def _starts_video(past: Past) -> bool:
    return all(entry is None for entry in past)


class EncodeStream:
    """Encodes consecutive pixel chunks of one video, carrying the causal cache between them.

    The first chunk must hold 1 + 4k frames (it starts at frame 0), later chunks 4k frames; each
    `push` returns the latents of exactly the frames it was given (1 + k, then k).
    """

    def __init__(self, vae: WanVAE) -> None:
        self.vae = vae
        self.past = vae.start_of_video("encoder")
        self.frames_seen = 0

    @torch.no_grad()
    def push(self, video: torch.Tensor) -> torch.Tensor:
        """Pixels BCTHW [B, 3, n, H, W] in [-1, 1] -> latents BTCHW float32 (inputs are cast to the model's dtype)."""
        vae = self.vae
        n = video.shape[2]
        first = 1 if self.frames_seen == 0 else 0  # frame 0 gets a latent of its own
        if n <= 0 or (n - first) % FRAMES_PER_LATENT:
            rule = "1 + 4k frames" if first else "4k frames, k >= 1"
            raise ValueError(f"encode chunk of {n} frames after {self.frames_seen}: this chunk needs {rule}")
        video = video.to(device=vae.device, dtype=vae.dtype)
        # Upstream's chunking: frame 0 alone, then groups of 4, each giving one latent frame.
        starts = [0] * first + list(range(first, n, FRAMES_PER_LATENT))
        ends = starts[1:] + [n]
        # conv1 runs per latent frame (upstream: once over all of them) so that no kernel sees a
        # chunking-dependent shape; that is what makes streamed latents bit-equal to whole-video ones.
        moments = []
        for s, e in zip(starts, ends):
            latent_moments, self.past = vae.run_encode_step(video[:, :, s:e], self.past)
            moments.append(latent_moments)
        self.frames_seen += n
        mu = torch.cat(moments, dim=2)[:, : vae.config.z_dim]  # the log-variance half is unused
        mean, inv_std = vae.latent_scale()
        return ((mu - mean) * inv_std).float().permute(0, 2, 1, 3, 4)


class DecodeStream:
    """Decodes consecutive latent chunks of one video (any sizes), carrying the causal cache.

    Each `push` returns the frames of exactly the latents it was given: 1 for the video's first
    latent, 4 for every later one. This is upstream's `cached_decode`.
    """

    def __init__(self, vae: WanVAE, clamp: bool = True) -> None:
        self.vae = vae
        self.clamp = clamp
        self.past = vae.start_of_video("decoder")

    @torch.no_grad()
    def push(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents BTCHW [B, n, z_dim, h, w] -> frames BTCHW float32 (clamped to [-1, 1] if `clamp`)."""
        vae = self.vae
        if latents.shape[1] == 0:
            raise ValueError("decode chunk has no latent frames")
        mean, inv_std = vae.latent_scale()
        z = latents.permute(0, 2, 1, 3, 4).to(device=vae.device, dtype=vae.dtype) / inv_std + mean
        # One latent per decoder call: the upsample3d cache quirk depends on 1-frame chunks. conv2
        # also runs per latent (upstream: over the whole chunk), so results do not depend on chunking.
        decoded = []
        for i in range(z.shape[2]):
            latent_frames, self.past = vae.run_decode_step(z[:, :, i : i + 1], self.past)
            decoded.append(latent_frames)
        frames = torch.cat(decoded, dim=2).float()
        if self.clamp:
            frames = frames.clamp(-1, 1)
        return frames.permute(0, 2, 1, 3, 4)


def build_wan_vae(config: WanVAEConfig = WanVAEConfig(), dtype: torch.dtype = torch.float32, device="cpu") -> WanVAE:
    """An uninitialised VAE (memory allocated, values undefined) ready to receive weights."""
    with torch.device("meta"):
        model = WanVAE(config)
    return model.to_empty(device=device).to(dtype).eval().requires_grad_(False)


def load_wan_vae(
    path: str | Path,
    config: WanVAEConfig = WanVAEConfig(),
    dtype: torch.dtype = torch.bfloat16,
    device="cpu",
) -> WanVAE:
    """The VAE from `Wan2.1_VAE.pth` (or a `.safetensors` with the same keys).

    Loaded in fp32 and cast once to `dtype`, so bf16 weights round like upstream's `.to(bfloat16)`.
    Raises CheckpointError naming file and key for a missing file, missing/unknown keys or wrong shapes.
    """
    state = read_state_dict(path)  # first: a bad path fails before the fp32 model is allocated
    model = build_wan_vae(config, torch.float32, "cpu")
    load_into(model, state, str(path))
    return model.to(device=device, dtype=dtype)
