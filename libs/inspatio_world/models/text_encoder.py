"""The umT5-XXL text encoder (upstream `wan/modules/t5.py` T5Encoder behind `WanTextEncoder`).

The network is transformers' `UMT5EncoderModel`, built from a config object (nothing is downloaded)
and loaded from the Wan checkpoint `models_t5_umt5-xxl-enc-bf16.{pth,safetensors}`, whose key names
are translated by `hf_keys`. Tensor layouts (B batch, L = text_len tokens, 512 in deployment):

    ids, mask       [B, L] int64   token ids (EOS id 1, padding id 0); mask 1 on the first seq_len positions
    encoder output  [B, L, dim]    model dtype; padded query rows are computed like the others
    prompt_embeds   [B, L, dim]    the same with rows >= seq_len set to 0 (what the DiT consumes, unmasked)

Numerics match upstream: bit-exact against upstream's T5Encoder run on the same machine, fp32 and
bf16 on CPU (torch 2.13) and bf16 on an H100 (torch 2.11, 4 full-width layers, 512 tokens, padding).
* The model is cast to the working dtype as a whole, `wo` included: UMT5 keeps `wo` in fp32 only
  through `from_pretrained`, which would turn the residual stream fp32 while Wan runs in bf16.
  Parameters are allocated in the working dtype and the weights are rounded to it on copy, which is
  the same round-to-nearest-even as upstream's load-in-fp32-then-`.to(bf16)`, without an fp32 copy.
* Attention runs through `wan_t5_attention`, registered with transformers as the attention
  implementation "wan_t5": scores q·kᵀ unscaled, plus the relative-position bias whose padded keys are
  replaced by finfo.min, softmax computed in fp32 and cast back, times v. This pins upstream's order
  of operations. HF's "eager" path measured the same, but only because torch's bf16 softmax happens
  to accumulate in fp32 (transformers 5.x no longer upcasts it); "sdpa" differed by up to 0.25 in
  bf16 on CPU.
"""

from __future__ import annotations

import html
import re
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import ftfy
import torch
from transformers import AttentionInterface, AutoTokenizer, UMT5Config, UMT5EncoderModel
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from .checkpoints import CheckpointError, load_into, read_state_dict

ATTN_IMPLEMENTATION = "wan_t5"
DEFAULT_CACHE_SIZE = 8

# Wan `blocks.{i}.<name>` -> HF `encoder.block.{i}.<name>` (layer.0 = self-attention, layer.1 = FFN).
_BLOCK_KEYS = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # the GELU branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # the linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
# The token embedding feeds both HF names; they are one tied parameter.
_TOP_KEYS = {
    "token_embedding.weight": ("shared.weight", "encoder.embed_tokens.weight"),
    "norm.weight": ("encoder.final_layer_norm.weight",),
}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")


@dataclass(frozen=True)
class TextEncoderConfig:
    """Wan-style umT5 sizes (`umt5_xxl(encoder_only=True)` defaults; parity packs give tiny ones)."""

    vocab_size: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    encoder_layers: int = 24
    num_buckets: int = 32
    shared_pos: bool = False
    max_dist: int = 128
    eps: float = 1e-6
    text_len: int = 512

    @classmethod
    def from_dict(cls, raw: dict, **overrides) -> "TextEncoderConfig":
        """From a Wan-style dict (a parity pack's `model_config.json`); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values.update(overrides)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.shared_pos:
            raise ValueError("shared_pos=True (one bias table for all layers) is not supported; umT5 has one per layer")
        if self.dim_attn % self.num_heads:
            raise ValueError(f"dim_attn {self.dim_attn} is not a multiple of num_heads {self.num_heads}")

    def to_hf(self) -> UMT5Config:
        return UMT5Config(
            vocab_size=self.vocab_size,
            d_model=self.dim,
            d_kv=self.dim_attn // self.num_heads,
            d_ff=self.dim_ffn,
            num_layers=self.encoder_layers,
            num_heads=self.num_heads,
            relative_attention_num_buckets=self.num_buckets,
            relative_attention_max_distance=self.max_dist,
            layer_norm_epsilon=self.eps,
            feed_forward_proj="gated-gelu",  # gelu_new = upstream's tanh GELU
            dropout_rate=0.0,
            is_encoder_decoder=False,
            use_cache=False,
            attn_implementation=ATTN_IMPLEMENTATION,
        )


# ---------------------------------------------------------------------------------------------
# Attention with upstream numerics


def wan_t5_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float,
    position_bias: torch.Tensor,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream T5Attention on HF layouts.

    query/key/value [B, N, L, D]; position_bias [1, N, Lq, Lk]; attention_mask bool [B, 1, Lq, Lk]
    (True = attend) or None when nothing is padded. Returns ([B, Lq, N, D], probabilities).
    UMT5 always passes a bias (zeros for layers without a table) and scaling=1.0 (T5 does not scale
    scores); dropout is 0 since the model is built without it.
    """
    bias = position_bias
    if attention_mask is not None:
        # Upstream replaces the bias of padded keys by finfo.min (HF's eager path adds it instead).
        bias = position_bias.masked_fill(~attention_mask, torch.finfo(query.dtype).min)
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling + bias
    probs = torch.softmax(scores.float(), dim=-1).to(scores.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def register_wan_attention() -> None:
    """Make "wan_t5" a valid `attn_implementation` (idempotent); its masks are sdpa's boolean ones."""
    AttentionInterface.register(ATTN_IMPLEMENTATION, wan_t5_attention)
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


# ---------------------------------------------------------------------------------------------
# Model and weights


def build_encoder_model(config: TextEncoderConfig, dtype: torch.dtype = torch.float32, device="cpu") -> UMT5EncoderModel:
    """An uninitialised `UMT5EncoderModel` (memory allocated on `device`, values undefined), all in `dtype`."""
    config.validate()
    register_wan_attention()
    with torch.device("meta"):
        model = UMT5EncoderModel(config.to_hf())
    model = model.to(dtype=dtype).to_empty(device=device)
    # to_empty gives each module its own new parameter, which unties the embedding: tie it again.
    model.set_input_embeddings(model.shared)
    return model.eval().requires_grad_(False)


def hf_keys(wan_key: str) -> tuple[str, ...]:
    """The HF `UMT5EncoderModel` names that a Wan T5 encoder key loads into (KeyError if none)."""
    if wan_key in _TOP_KEYS:
        return _TOP_KEYS[wan_key]
    match = _BLOCK_KEY.fullmatch(wan_key)
    if match is None or match.group(2) not in _BLOCK_KEYS:
        raise KeyError(wan_key)
    return (f"encoder.block.{match.group(1)}.{_BLOCK_KEYS[match.group(2)]}",)


def wan_keys(config: TextEncoderConfig) -> list[str]:
    """Every key of a Wan T5 encoder checkpoint of this size."""
    blocks = [f"blocks.{i}.{name}" for i in range(config.encoder_layers) for name in _BLOCK_KEYS]
    return ["token_embedding.weight", *blocks, "norm.weight"]


def load_wan_weights(model: UMT5EncoderModel, config: TextEncoderConfig, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy a Wan-named state dict into `model` strictly; errors name `source` and the Wan key."""
    targets = model.state_dict()
    expected = {key: tuple(targets[hf_keys(key)[0]].shape) for key in wan_keys(config)}
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise CheckpointError(f"{source}: unexpected key {unknown[0]!r} ({len(unknown)} unexpected keys in all)")
    missing = [key for key in expected if key not in state]
    if missing:
        raise CheckpointError(f"{source}: missing key {missing[0]!r} ({len(missing)} missing keys in all)")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise CheckpointError(f"{source}: key {key!r} has shape {tuple(state[key].shape)}, the model needs {shape}")
    load_into(model, {hf: value for key, value in state.items() for hf in hf_keys(key)}, source)


# ---------------------------------------------------------------------------------------------
# Prompts


def clean_prompt(text: str) -> str:
    """Upstream's 'whitespace' cleaning: fix mojibake, unescape HTML twice, collapse whitespace.

    Upstream collapses with the `regex` module; stdlib `re` differs only on U+001C..U+001F, which
    ftfy has already removed.
    """
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip()


class PromptTokenizer:
    """The umT5 tokenizer from a local folder (`<wan folder>/google/umt5-xxl/`), padded to text_len."""

    def __init__(self, folder: str | Path, text_len: int):
        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: tokenizer folder not found")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.text_len = text_len

    def __call__(self, cleaned: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Already-cleaned prompts -> (ids, mask), both [B, text_len] int64; EOS appended, padding id 0."""
        tokens = self.tokenizer(
            list(cleaned),
            padding="max_length",
            truncation=True,
            max_length=self.text_len,
            add_special_tokens=True,
            return_tensors="pt",
        )
        return tokens.input_ids, tokens.attention_mask


def zero_padding_rows(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, L, C] encoder output -> a copy with rows >= seq_len (mask count per row) set to 0."""
    seq_lens = mask.gt(0).sum(dim=1)
    padded = torch.arange(hidden.shape[1], device=hidden.device)[None, :] >= seq_lens.to(hidden.device)[:, None]
    return hidden.masked_fill(padded[..., None], 0.0)


class TextEncoder:
    """Prompts -> prompt_embeds [B, text_len, dim], with a per-process LRU cache of encoded prompts.

    The cache is keyed by the cleaned prompt, so prompts that clean to the same text share an entry.
    Each miss is encoded alone (batch 1, as upstream encodes one prompt per video), so an entry never
    depends on which prompts it was requested with. `cache_size=0` disables caching.
    """

    def __init__(
        self,
        model: UMT5EncoderModel,
        config: TextEncoderConfig,
        tokenizer: PromptTokenizer | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        offload: bool = False,
    ):
        """`offload` keeps the weights in pinned host memory and streams them to the GPU one module
        (the embedding, each block, the final norm) at a time while a prompt is encoded, dropping
        each after use: the real encoder then needs ~2 GB of GPU memory at peak instead of ~11 GB,
        at the cost of one host-to-device copy of the weights per prompt not in the cache."""
        self.model = model
        self.config = config
        self.tokenizer = tokenizer
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.device = model.shared.weight.device
        self.offload = offload and self.device.type == "cuda"
        if self.offload:
            self._stream_weights_per_module()

    def _stream_weights_per_module(self) -> None:
        encoder = self.model.encoder
        for module in (encoder.embed_tokens, *encoder.block, encoder.final_layer_norm):
            tensors = list(module.parameters(recurse=True)) + list(module.buffers(recurse=True))
            hosts = [torch.empty_like(t.data, device="cpu", pin_memory=True).copy_(t.data) for t in tensors]
            for tensor, host in zip(tensors, hosts):
                tensor.data = host  # the GPU copy is freed here; the pinned host copy stays

            def load(_module, _args, tensors=tensors, hosts=hosts):
                for tensor, host in zip(tensors, hosts):
                    tensor.data = host.to(self.device, non_blocking=True)

            def drop(_module, _args, _output, tensors=tensors, hosts=hosts):
                for tensor, host in zip(tensors, hosts):
                    tensor.data = host

            module.register_forward_pre_hook(load)
            module.register_forward_hook(drop)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.shared.weight.dtype

    @torch.no_grad()
    def encode_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Raw encoder output [B, L, dim] for token ids and mask [B, L] (padded rows not zeroed)."""
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """prompt_embeds [B, text_len, dim] in the model dtype, on the model device."""
        if self.tokenizer is None:
            raise RuntimeError("this text encoder was loaded without a tokenizer folder; use encode_ids")
        rows = [self._embed(clean_prompt(prompt)) for prompt in prompts]
        return torch.stack(rows)

    def clear_cache(self) -> None:
        self._cache.clear()

    def _embed(self, cleaned: str) -> torch.Tensor:
        if cleaned in self._cache:
            self._cache.move_to_end(cleaned)
            return self._cache[cleaned]
        ids, mask = self.tokenizer([cleaned])
        row = zero_padding_rows(self.encode_ids(ids, mask), mask)[0]
        if self.cache_size > 0:
            self._cache[cleaned] = row
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return row


def load_text_encoder(
    weights_path: str | Path,
    tokenizer_dir: str | Path | None = None,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
    config: TextEncoderConfig = TextEncoderConfig(),
    cache_size: int = DEFAULT_CACHE_SIZE,
    offload: bool = False,
) -> TextEncoder:
    """The umT5 encoder from a Wan checkpoint (`.pth` or `.safetensors`), running entirely in `dtype`.

    Without `tokenizer_dir` only `encode_ids` works (parity runs feed token ids directly).
    """
    state = read_state_dict(weights_path)
    model = build_encoder_model(config, dtype, device)
    load_wan_weights(model, config, state, str(weights_path))
    tokenizer = PromptTokenizer(tokenizer_dir, config.text_len) if tokenizer_dir is not None else None
    return TextEncoder(model, config, tokenizer, cache_size, offload)
