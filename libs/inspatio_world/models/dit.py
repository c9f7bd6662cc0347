"""The block-causal Wan2.1 DiT of InSpatio-World (upstream `CausalWanModel`), written from the spec.

Shapes (glossary): B batch, C channels, F latent frames, H W latent height/width, L tokens,
N heads, D head dim. The model takes latents as [B, C, F, H, W] and returns the flow [B, 16, F, H, W].

Numerics follow upstream exactly: every elementwise step rounds to the parameter dtype (bf16 in
deployment), RoPE and the time sinusoid run in float64, RMSNorm statistics in fp32.
State-dict names equal the released checkpoints (Wan `diffusion_pytorch_model` layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import nn

from .attention import attention, selected_backends
from .fused_gelu import feed_forward
from .kv_cache import LayerCache
from .rope import RopeGrid, RopeTable, apply_rope, configured_precision
from .sequence_parallel import SequenceShards

RENDER_CHANNELS = 20  # 4 mask + 16 render-latent channels appended to the 16 noisy ones


@dataclass(frozen=True)
class DiTConfig:
    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 36
    out_dim: int = 16
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    model_type: str = "t2v"

    @classmethod
    def from_dict(cls, raw: dict, **overrides) -> "DiTConfig":
        """From a Wan `config.json`-style dict; keys starting with `_` and unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values.update(overrides)
        if "patch_size" in values:
            values["patch_size"] = tuple(values["patch_size"])
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.model_type != "t2v":
            raise ValueError(f"model_type {self.model_type!r}: only the t2v cross-attention is supported")
        if not (self.qk_norm and self.cross_attn_norm):
            raise ValueError("InSpatio-World uses qk_norm and cross_attn_norm; both must be true")
        head_dim, rem = divmod(self.dim, self.num_heads)
        if rem or head_dim % 2:
            raise ValueError(f"dim {self.dim} must split into {self.num_heads} heads of even size")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) in fp32, rounded to the input dtype, then times the gain."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """LayerNorm on the input dtype directly (no explicit fp32 up-cast, as upstream)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).type_as(x)


class _Projections(nn.Module):
    """q/k/v/o projections with RMS-normed queries and keys, shared by both attention kinds."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        dim = config.dim
        self.num_heads = config.num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, config.eps)
        self.norm_k = RMSNorm(dim, config.eps)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, N*D] -> [B, L, N, D]."""
        return x.view(*x.shape[:2], self.num_heads, -1)


class SelfAttention(_Projections):
    shards: SequenceShards | None = None  # set by CausalDiT.use_sequence_parallel

    def forward(self, x: torch.Tensor, rope: RopeGrid, cache: LayerCache | None) -> torch.Tensor:
        q = apply_rope(self.heads(self.norm_q(self.q(x))), rope)
        k = apply_rope(self.heads(self.norm_k(self.k(x))), rope)
        v = self.heads(self.v(x))
        if self.shards is not None:  # one exchange for q, k and v: to all tokens, this rank's heads
            batch = q.shape[0]
            q, k, v = self.shards.tokens_to_heads(torch.cat([q, k, v])).split(batch)
        if cache is not None:
            k, v = cache.attend_keys(k, v)
        out = attention(q, k, v)
        if self.shards is not None:
            out = self.shards.heads_to_tokens(out)
        return self.o(out.flatten(2))


class CrossAttention(_Projections):
    """Attention of the video tokens over all text tokens (padding included: no mask, as upstream)."""

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q = self.heads(self.norm_q(self.q(x)))
        k = self.heads(self.norm_k(self.k(context)))
        v = self.heads(self.v(context))
        return self.o(attention(q, k, v, kind="cross").flatten(2))


class Block(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        dim = config.dim
        self.norm1 = LayerNorm(dim, eps=config.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(config)
        self.norm3 = LayerNorm(dim, eps=config.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(config)
        self.norm2 = LayerNorm(dim, eps=config.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, config.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(config.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))
        self.fused_gelu = False  # the FFN's GELU in its first GEMM (models/fused_gelu.py)

    def forward(self, x, time_mod, rope, context, cache: LayerCache | None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + time_mod).chunk(6, dim=1)
        x = x + self.self_attn(self.norm1(x) * (1 + scale1) + shift1, rope, cache) * gate1
        x = x + self.cross_attn(self.norm3(x), context)
        return x + feed_forward(self.ffn, self.norm2(x) * (1 + scale2) + shift2, self.fused_gelu) * gate2


class Head(nn.Module):
    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.norm = LayerNorm(config.dim, eps=config.eps, elementwise_affine=False)
        self.head = nn.Linear(config.dim, math.prod(config.patch_size) * config.out_dim)
        self.modulation = nn.Parameter(torch.zeros(1, 2, config.dim))

    def forward(self, x: torch.Tensor, time_emb: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation + time_emb.unsqueeze(1)).chunk(2, dim=1)
        return self.head(self.norm(x) * (1 + scale) + shift)


def timestep_sinusoid(timesteps: torch.Tensor, freq_dim: int) -> torch.Tensor:
    """[cos(t w_k) || sin(t w_k)] with w_k = 10000^(-k/half), in float64; [B] -> [B, freq_dim]."""
    half = freq_dim // 2
    position = timesteps.to(torch.float64)
    exponents = torch.arange(half, dtype=torch.float64, device=position.device).div(half)
    angles = torch.outer(position, torch.pow(10000, -exponents))
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class CausalDiT(nn.Module):
    """Wan2.1 DiT with a 36-channel input and a per-layer KV cache for block-causal generation."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        dim = config.dim
        self.patch_embedding = nn.Conv3d(config.in_dim, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(config.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(config.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.head = Head(config)
        self._rope: dict[torch.device, RopeTable] = {}
        self.rope_precision: torch.dtype | None = None  # None: $INSPATIO_ROPE_PRECISION for the device
        self.shards: SequenceShards | None = None  # sequence-parallel group (models/sequence_parallel.py)

    def rope_table(self, device: torch.device) -> RopeTable:
        if device not in self._rope:
            precision = self.rope_precision or configured_precision(device)
            self._rope[device] = RopeTable(self.config.head_dim, device, precision)
        return self._rope[device]

    def use_rope_precision(self, precision: torch.dtype | None) -> None:
        """Rotate in `precision` from now on (float64 is upstream's; None: the configured one);
        before `compile_blocks`."""
        self.rope_precision = precision
        self._rope.clear()

    def compile_blocks(self) -> None:
        """Compile each transformer block (regional torch.compile, one graph per pass shape).

        Inductor fuses the elementwise chains; `emulate_precision_casts` keeps eager's rounding to
        the parameter dtype after every op, so results stay those of the plain path up to
        reduction-order effects (measured by the GPU tests and `inspatio bench`).
        """
        from .compile_settings import configure_compile

        configure_compile()
        selected_backends()  # resolve outside the graph
        for block in self.blocks:
            block.compile(dynamic=False)

    def use_sequence_parallel(self, shards: SequenceShards | None) -> None:
        """Spread each pass over the ranks of `shards` (None: this process alone); before
        `compile_blocks`. The KV cache then holds `cached_heads` heads per rank."""
        if shards is not None and self.config.num_heads % shards.size:
            raise ValueError(f"{self.config.num_heads} heads do not split over {shards.size} sequence-parallel ranks")
        self.shards = shards
        for block in self.blocks:
            block.self_attn.shards = shards

    @property
    def cached_heads(self) -> int:
        """Heads of the KV cache in this process (all, or this rank's share)."""
        return self.config.num_heads // (self.shards.size if self.shards is not None else 1)

    def use_fused_gelu(self, fused: bool = True) -> None:
        """Compute the feed-forward's GELU in its first GEMM on CUDA (models/fused_gelu.py); before
        `compile_blocks`. FP8 linears keep the separate GELU."""
        for block in self.blocks:
            block.fused_gelu = fused

    def use_fp8_linears(self) -> None:
        """Quantize the blocks' linear layers to FP8 (models/fp8_linear.py); before `compile_blocks`."""
        from .fp8_linear import quantize_blocks_fp8

        quantize_blocks_fp8(self.blocks)

    def embed_text(self, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """[B, text_len, text_dim] umT5 output -> [B, text_len, dim]; padded rows are not masked."""
        return self.text_embedding(prompt_embeds)

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        render: torch.Tensor | None = None,
        cache=None,
        cache_mode: str = "none",
        cache_length: int = 0,
        time_offset: int = 0,
    ) -> torch.Tensor:
        """One DiT pass; returns the raw output (flow) [B, out_dim, F, H, W].

        x: [B, 16, F, H, W] noisy latents (with `render` [B, 20, F, H, W] appended), or already
           [B, 36, F, H, W] for a context pass; without `render` a 16-channel x gets 20 zero channels.
        timestep: [B] or [B, F]; only the first frame's timestep is used (upstream uses t[:, 0]).
        text: [B, text_len, dim] prompt embeddings after `embed_text` (computed once per prompt).
        cache / cache_mode: "write" stores this pass's post-RoPE keys/values at cache rows [0, L)
           and attends over them; "read" attends over cache rows [0, cache_length) plus its own;
           "none" attends over its own tokens only.
        time_offset: temporal RoPE position of the first frame (0 for context, 6 for denoising).
        """
        x = self._assemble_input(x, render)
        pt, ph, pw = self.config.patch_size
        frames, height, width = x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw
        tokens = self.patch_embedding(x).flatten(2).transpose(1, 2)
        rows = self.shards.span(tokens.shape[1]) if self.shards is not None else slice(None)
        tokens = tokens[:, rows]
        rope = self.rope_table(x.device).grid(frames, height, width, time_offset, rows)

        t = timestep[:, 0] if timestep.dim() == 2 else timestep
        time_emb = self.time_embedding(timestep_sinusoid(t, self.config.freq_dim).type_as(tokens))
        time_mod = self.time_projection(time_emb).unflatten(1, (6, self.config.dim))

        for index, block in enumerate(self.blocks):
            layer_cache = cache.layer(index, cache_mode, cache_length) if cache_mode != "none" else None
            tokens = block(tokens, time_mod, rope, text, layer_cache)
        out = self.head(tokens, time_emb)
        if self.shards is not None:
            out = self.shards.gather_tokens(out)
        return self._unpatchify(out, frames, height, width)

    def _assemble_input(self, x: torch.Tensor, render: torch.Tensor | None) -> torch.Tensor:
        in_dim = self.config.in_dim
        if x.shape[1] == in_dim:
            return x
        if render is None:
            render = x.new_zeros(x.shape[0], in_dim - x.shape[1], *x.shape[2:])
        x = torch.cat([x, render], dim=1)
        if x.shape[1] != in_dim:
            raise ValueError(f"DiT input has {x.shape[1]} channels after adding the render, expected {in_dim}")
        return x

    def _unpatchify(self, out: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
        """[B, F*h*w, pt*ph*pw*C] -> [B, C, F*pt, h*ph, w*pw]; feature index = (q*pw + r)*C + c."""
        pt, ph, pw = self.config.patch_size
        c = self.config.out_dim
        b = out.shape[0]
        out = out.view(b, frames, height, width, pt, ph, pw, c)
        out = out.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return out.reshape(b, c, frames * pt, height * ph, width * pw)
