"""Loading the generator's models (DiT, text encoder, autoencoders) from a weights folder.

Files are checked before anything is read, then each model is loaded through its loader, so a
missing or mismatched checkpoint fails at start-up with the file and key named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import envvars
from ..models.autoencoder_compile import channels_last_models, mode_from_setting, use_channels_last
from ..models.checkpoints import build_dit, init_random_, load_dit, read_json
from ..models.dit import CausalDiT, DiTConfig
from ..models.taehv import TAEHV, TAEHVConfig, load_taehv
from ..models.text_encoder import PromptTokenizer, TextEncoder, TextEncoderConfig, build_encoder_model, load_text_encoder
from ..models.wan_vae import WanVAE, WanVAEConfig, build_wan_vae, load_wan_vae
from ..jobs.options import AUTOENCODERS
from .weights import WeightsFolder



def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs as upstream; fp32 on CPU, where bf16 convolutions are many times slower."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def taehv_dtype(device: torch.device) -> torch.dtype:
    """TAEHV runs in fp16 on GPUs as upstream; fp32 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _prepare_dit(dit: CausalDiT, compile_dit: bool | None, fp8: bool, device: torch.device) -> None:
    """`compile_dit` None means: compile on CUDA (the fast path); eager stays the plain reference
    path. `fp8` quantizes the blocks' linear layers first (changes the numbers; off by default);
    INSPATIO_FUSED_GELU moves the feed-forward's GELU into its GEMM."""
    dit.use_fused_gelu(envvars.get_flag(envvars.FUSED_GELU))
    if fp8:
        dit.use_fp8_linears()
    if compile_dit if compile_dit is not None else device.type == "cuda":
        dit.compile_blocks()


def _prepare_autoencoders(wan_vae: WanVAE | None, taehv: TAEHV | None, device: torch.device) -> None:
    """INSPATIO_AUTOENCODER_CHANNELS_LAST and INSPATIO_COMPILE_AUTOENCODERS: channels-last
    convolutions, compiled per-block steps (models/autoencoder_compile.py)."""
    device = torch.device(device)
    channels_last = channels_last_models(envvars.AUTOENCODER_CHANNELS_LAST.name, envvars.get(envvars.AUTOENCODER_CHANNELS_LAST), device)
    mode = mode_from_setting(envvars.COMPILE_AUTOENCODERS.name, envvars.get(envvars.COMPILE_AUTOENCODERS), device)
    for name, model in (("wan_vae", wan_vae), ("taehv", taehv)):
        if model is not None:
            use_channels_last(model, name in channels_last)
            model.use_compiled_steps(mode)


@dataclass
class GeneratorModels:
    dit: CausalDiT
    text_encoder: TextEncoder
    wan_vae: WanVAE | None
    taehv: TAEHV | None
    weights: WeightsFolder
    dtype: torch.dtype

    @property
    def device(self) -> torch.device:
        return self.dit.patch_embedding.weight.device

    @classmethod
    def load(
        cls,
        weights: WeightsFolder,
        device: torch.device,
        autoencoders: tuple[str, ...] = ("wan_vae",),
        dtype: torch.dtype | None = None,
        compile_dit: bool | None = None,
        offload_text_encoder: bool = False,
        fp8: bool = False,
    ) -> "GeneratorModels":
        """Check the files, then load. `compile_dit` None compiles the DiT blocks on CUDA.
        `offload_text_encoder` keeps umT5 in host memory
        between prompts (about 11 GB less GPU memory, one copy per uncached prompt).
        `fp8`: FP8 linear layers in the DiT blocks (models/fp8_linear.py)."""
        unknown = set(autoencoders) - set(AUTOENCODERS)
        if unknown or not autoencoders:
            raise ValueError(f"autoencoders {autoencoders!r}: choose from {AUTOENCODERS}")
        for name in autoencoders:
            weights.check(name)
        dtype = dtype or default_dtype(device)
        profile = weights.profile
        dit_config = DiTConfig.from_dict(read_json(weights.dit_config_file), in_dim=36)
        dit = load_dit(weights.dit_file, dit_config, wan_dir=weights.wan_dir, dtype=dtype, device=device, strict=weights.strict_dit)
        _prepare_dit(dit, compile_dit, fp8, device)
        text_encoder = load_text_encoder(
            weights.text_encoder_file, weights.tokenizer_dir, dtype=dtype, device=device,
            config=TextEncoderConfig.from_dict(profile.get("text_encoder", {})), offload=offload_text_encoder,
        )  # fmt: skip
        wan_vae = taehv = None
        if "wan_vae" in autoencoders:
            wan_vae = load_wan_vae(weights.vae_file, WanVAEConfig.from_dict(profile.get("vae", {})), dtype=dtype, device=device)
        if "taehv" in autoencoders:
            taehv = load_taehv(weights.taehv_file, TAEHVConfig.from_dict(profile.get("taehv", {})), dtype=taehv_dtype(device), device=device)
        _prepare_autoencoders(wan_vae, taehv, device)
        return cls(dit, text_encoder, wan_vae, taehv, weights, dtype)

    @classmethod
    def random(cls, device: torch.device, tokenizer_dir, autoencoders: tuple[str, ...] = ("wan_vae", "taehv"),
               compile_dit: bool | None = None, offload_text_encoder: bool = False, fp8: bool = False) -> "GeneratorModels":  # fmt: skip
        """Real-size models with random weights, built on the device (benchmarks: speed does not
        depend on the values). `tokenizer_dir` may hold any umT5-style tokenizer."""
        dtype = default_dtype(device)
        dit = init_random_(build_dit(DiTConfig(), dtype, device))
        _prepare_dit(dit, compile_dit, fp8, device)
        config = TextEncoderConfig()
        encoder = init_random_(build_encoder_model(config, dtype, device))
        text_encoder = TextEncoder(encoder, config, PromptTokenizer(tokenizer_dir, config.text_len), offload=offload_text_encoder)
        wan_vae = init_random_(build_wan_vae(dtype=dtype, device=device)).eval() if "wan_vae" in autoencoders else None
        taehv = init_random_(TAEHV().to(device, taehv_dtype(device))).eval().requires_grad_(False) if "taehv" in autoencoders else None
        _prepare_autoencoders(wan_vae, taehv, device)
        return cls(dit, text_encoder, wan_vae, taehv, WeightsFolder(Path("<random>")), dtype)
