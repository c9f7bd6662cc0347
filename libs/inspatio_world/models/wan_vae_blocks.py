"""Building blocks of the Wan2.1 VAE (upstream `wan/modules/vae.py`), written from the spec (§6.2-6.4).

Every tensor here is a video [B, C, T, H, W]. Blocks run on one time chunk at a time and carry the
past they need across chunks in a `CausalCache`: a dict owned by the caller (one per stream), keyed
by the layer that reads and writes the entry, holding that layer's last input frames.

Numerics follow upstream: norms run in the input dtype (bf16 in deployment, no fp32 up-cast), the
nearest upsample runs in fp32, and the op order is kept so that results match bit for bit in fp32.
Module and parameter names equal `Wan2.1_VAE.pth`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CausalCache = dict[nn.Module, torch.Tensor]

PAST_FRAMES = 2  # a 3-tap causal conv needs the two frames before the chunk


def frames_to_images(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B*T, C, H, W] (a copy), for the per-frame 2-D layers."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def images_to_frames(x: torch.Tensor, batch: int) -> torch.Tensor:
    """[B*T, C, H, W] -> [B, C, T, H, W] (a view), inverse of `frames_to_images`."""
    bt, c, h, w = x.shape
    return x.reshape(batch, bt // batch, c, h, w).permute(0, 2, 1, 3, 4)


class CausalConv3d(nn.Conv3d):
    """Conv3d padded only towards the past in time (2*p_t frames), symmetrically in space.

    The past comes from `past` frames of the previous chunk when given; zeros fill what is missing.
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__(in_dim, out_dim, kernel_size, stride=stride, padding=0)
        pad_t, pad_h, pad_w = padding if isinstance(padding, tuple) else (padding,) * 3
        self.space_padding = (pad_w, pad_w, pad_h, pad_h)
        self.past_padding = 2 * pad_t

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        zeros_needed = self.past_padding
        if past is not None and zeros_needed > 0:
            x = torch.cat([past, x], dim=2)
            zeros_needed -= past.shape[2]
        return super().forward(F.pad(x, (*self.space_padding, zeros_needed, 0)))

    def step(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        """Convolve one chunk with the cached past, then cache this chunk's last two frames.

        The video starts with two zero frames of past: the same numbers as zero padding, and one
        cache shape from the first chunk on (a compiled step needs one graph fewer). A 1-frame
        chunk borrows the newest cached frame so that the next chunk still sees two.
        """
        past = cache.get(self)
        if past is None:
            past = x.new_zeros(*x.shape[:2], PAST_FRAMES, *x.shape[3:])
        tail = cached_copy(x[:, :, -PAST_FRAMES:])
        if tail.shape[2] < PAST_FRAMES:
            tail = torch.cat([past[:, :, -1:], tail], dim=2)
        out = self(x, past)
        cache[self] = tail
        return out


def cached_copy(x: torch.Tensor) -> torch.Tensor:
    """A cache entry: a copy (the cache must not keep the whole chunk alive) with the standard
    strides of its layout (row-major or channels-last), so every chunk hands the next one the same
    strides (no recompilation of compiled steps) and channels-last activations stay channels-last."""
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)
    return x.clone(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)


def run_layers(layers: nn.Sequential, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
    """Apply a Sequential, feeding causal convs their cache."""
    for layer in layers:
        x = layer.step(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
    return x


class RMSNorm(nn.Module):
    """F.normalize over channels * sqrt(C) * gamma, in the input dtype (upstream `RMS_norm`, no bias)."""

    def __init__(self, dim: int, images: bool) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, 1, 1) if images else torch.ones(dim, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


class NearestUpsample2x(nn.Module):
    """Nearest x2 in H and W, computed in fp32 (upstream's workaround for bf16 interpolate) and cast back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=(2.0, 2.0), mode="nearest").type_as(x)


class ResidualBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        # Indices matter: the checkpoint names residual.0/.2/.3/.6.
        self.residual = nn.Sequential(
            RMSNorm(in_dim, images=False),
            nn.SiLU(),
            CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim, images=False),
            nn.SiLU(),
            nn.Dropout(dropout),
            CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        return run_layers(self.residual, x, cache) + self.shortcut(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions of each frame (no time mixing, no cache)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        b, c, t, h, w = x.shape
        qkv = self.to_qkv(self.norm(frames_to_images(x)))
        q, k, v = qkv.reshape(b * t, 1, c * 3, h * w).permute(0, 1, 3, 2).contiguous().chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)  # [B*T, 1, H*W, C], scale 1/sqrt(C)
        out = self.proj(out.squeeze(1).permute(0, 2, 1).reshape(b * t, c, h, w))
        return images_to_frames(out, b) + x


class Resample(nn.Module):
    """Spatial x2 down/up-sampling, optionally with a causal x2 in time ('...3d' modes).

    `resample.1` is the conv of the checkpoint; `time_conv` exists only in the 3d modes.
    """

    MODES = ("upsample2d", "upsample3d", "downsample2d", "downsample3d")

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"unknown resample mode {mode!r}")
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(NearestUpsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            # Pad right/bottom only, so a stride-2 3x3 conv halves even sizes exactly.
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        if self.mode == "upsample3d":
            x = self._upsample_time(x, cache)
        x = images_to_frames(self.resample(frames_to_images(x)), x.shape[0])
        if self.mode == "downsample3d":
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        """Each frame becomes two: time_conv gives 2C channels, read as (2, C) and interleaved in time."""
        b, c, t, h, w = x.shape
        past = cache.get(self.time_conv)
        if past is None:
            # First chunk: no time conv; the first latent decodes to a single frame.
            cache[self.time_conv] = x.new_zeros(b, c, PAST_FRAMES, h, w)
            return x
        tail = cached_copy(x[:, :, -PAST_FRAMES:])
        if tail.shape[2] < PAST_FRAMES:
            # QUIRK of this repo (spec §6.4), kept for parity: the older cached frame is not the
            # previous chunk's frame but the current one, except where the previous slot is zero.
            # After the first latent the tail is thus [x, x], not upstream Wan's [x_prev, x].
            tail = torch.cat([torch.where(past[:, :, -1:] == 0, 0, tail), tail], dim=2)
        x = self.time_conv(x, past)
        cache[self.time_conv] = tail
        return x.reshape(b, 2, c, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c, t * 2, h, w)

    def _downsample_time(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        """Stride-2 causal conv in time over [last cached frame, chunk]; the first chunk passes through."""
        past = cache.get(self.time_conv)
        if past is None:
            cache[self.time_conv] = cached_copy(x)
            return x
        out = self.time_conv(torch.cat([past[:, :, -1:], x], dim=2))
        cache[self.time_conv] = cached_copy(x[:, :, -1:])
        return out


class Encoder3d(nn.Module):
    """Pixels [B, 3, T, H, W] -> [B, out_dim, T', H/8, W/8] (mean ‖ logvar), one chunk per call."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        dim_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_scales: tuple[float, ...],
        temporal_downsample: tuple[bool, ...],
        dropout: float,
    ) -> None:
        super().__init__()
        dims = [dim * m for m in (1, *dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        blocks: list[nn.Module] = []
        scale = 1.0
        for i, (in_dim, stage_dim) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(in_dim, stage_dim, dropout))
                if scale in attn_scales:
                    blocks.append(AttentionBlock(stage_dim))
                in_dim = stage_dim
            if i != len(dim_mult) - 1:
                blocks.append(Resample(stage_dim, "downsample3d" if temporal_downsample[i] else "downsample2d"))
                scale /= 2.0
        self.downsamples = nn.Sequential(*blocks)
        top = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(top, top, dropout), AttentionBlock(top), ResidualBlock(top, top, dropout))
        self.head = nn.Sequential(RMSNorm(top, images=False), nn.SiLU(), CausalConv3d(top, out_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        x = self.conv1.step(x, cache)
        for block in (*self.downsamples, *self.middle):
            x = block(x, cache)
        return run_layers(self.head, x, cache)


class Decoder3d(nn.Module):
    """Latents [B, z_dim, T, h, w] -> pixels [B, 3, T', 8h, 8w], one chunk per call."""

    def __init__(
        self,
        dim: int,
        z_dim: int,
        dim_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_scales: tuple[float, ...],
        temporal_upsample: tuple[bool, ...],
        dropout: float,
    ) -> None:
        super().__init__()
        dims = [dim * m for m in (dim_mult[-1], *dim_mult[::-1])]
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        top = dims[0]
        self.middle = nn.Sequential(ResidualBlock(top, top, dropout), AttentionBlock(top), ResidualBlock(top, top, dropout))
        blocks: list[nn.Module] = []
        scale = 1.0 / 2 ** (len(dim_mult) - 2)
        for i, (in_dim, stage_dim) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                in_dim //= 2  # the upsample before this stage halved the channels
            for _ in range(num_res_blocks + 1):
                blocks.append(ResidualBlock(in_dim, stage_dim, dropout))
                if scale in attn_scales:
                    blocks.append(AttentionBlock(stage_dim))
                in_dim = stage_dim
            if i != len(dim_mult) - 1:
                blocks.append(Resample(stage_dim, "upsample3d" if temporal_upsample[i] else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.Sequential(*blocks)
        self.head = nn.Sequential(RMSNorm(dims[-1], images=False), nn.SiLU(), CausalConv3d(dims[-1], 3, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        x = self.conv1.step(x, cache)
        for block in (*self.middle, *self.upsamples):
            x = block(x, cache)
        return run_layers(self.head, x, cache)
