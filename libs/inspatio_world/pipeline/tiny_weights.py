"""The `tiny` profile: small random models written in the released weight layout.

The files go through exactly the same loading code as real weights; `inspatio_profile.json` gives
the small architectures and marks the folder as random, so every consumer can say loudly that
the pictures it makes are meaningless.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..models.checkpoints import build_dit, init_random_
from ..models.depth import DepthSettings
from ..models.dit import DiTConfig
from ..models.taehv import TAEHV, TAEHVConfig
from ..models.text_encoder import TextEncoderConfig, build_encoder_model, hf_keys, wan_keys
from ..models.wan_vae import WanVAEConfig, build_wan_vae
from .tiny_conditioning import write_tiny_da3, write_tiny_florence
from .weights import PROFILE_FILE, WeightsFolder, profile_json

TINY_TEXT_LEN = 16
TINY_DIT = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=TINY_TEXT_LEN)
TINY_VAE = WanVAEConfig(dim=8)
TINY_TAEHV = TAEHVConfig(n_f=(32, 16, 16, 16))
# DA3 at 112 (8x5 patches) instead of 504, and depth/render/generation at 224x128 instead of
# 832x480 (112x64): at full size the tiny pipeline takes minutes on a CPU; its pictures are noise anyway.
TINY_DEPTH = DepthSettings(process_res=112, output_size=(112, 64))
SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in the umT5 vocabulary
WORDS = (
    "a an the of in on at with and to is are from by into over under near its this that there "
    "street road car cars person people man woman tree trees building buildings sky cloud clouds "
    "water river sea room table chair window door light sun shadow wall floor grass field city"
).split()
TINY_T5 = TextEncoderConfig(
    vocab_size=len(SPECIAL_TOKENS) + len(WORDS), dim=32, dim_attn=32, dim_ffn=64, num_heads=2,
    encoder_layers=2, text_len=TINY_TEXT_LEN,
)  # fmt: skip


def write_tokenizer(folder: Path) -> None:
    """A word-level tokenizer with umT5's special-token ids: </s> appended, <pad> = 0."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + tuple(WORDS))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    fast.save_pretrained(str(folder))


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def write_tiny_weights(root: Path, seed: int = 0, conditioning: bool = True) -> WeightsFolder:
    """Write a complete tiny weight folder (idempotent: an existing complete folder is kept).

    `conditioning=False` skips DA3 and Florence-2 (the generator alone; DA3 takes ~8 s to build)."""
    weights = WeightsFolder(root)
    needed = [weights.dit_file, weights.taehv_file, weights.tokenizer_dir]
    if conditioning:
        needed += [weights.da3_dir / "model.safetensors", weights.florence_dir / "config.json"]
    if weights.is_random and all(p.exists() for p in needed):
        return weights
    weights.dit_file.parent.mkdir(parents=True, exist_ok=True)
    weights.taehv_file.parent.mkdir(parents=True, exist_ok=True)
    weights.tokenizer_dir.mkdir(parents=True, exist_ok=True)

    dit = _state(init_random_(build_dit(TINY_DIT), seed=seed, std=0.05))
    save_file({f"model.{k}": v for k, v in dit.items()}, str(weights.dit_file))
    save_file({k: v for k, v in dit.items() if not k.startswith("patch_embedding")},
              str(weights.wan_dir / "diffusion_pytorch_model.safetensors"))  # fmt: skip
    wan_config = {k: v for k, v in json.loads(profile_json(dit=TINY_DIT))["dit"].items() if k != "patch_size"}
    weights.dit_config_file.write_text(json.dumps({"_class_name": "WanModel", **wan_config, "in_dim": 16}, indent=2))
    torch.save(_state(init_random_(build_wan_vae(TINY_VAE), seed=seed + 1, std=0.1)), weights.vae_file)
    hf_state = _state(init_random_(build_encoder_model(TINY_T5), seed=seed + 2, std=0.1))
    torch.save({key: hf_state[hf_keys(key)[0]] for key in wan_keys(TINY_T5)}, weights.text_encoder_file)
    write_tokenizer(weights.tokenizer_dir)
    torch.save(_state(init_random_(TAEHV(TINY_TAEHV), seed=seed + 3, std=0.05)), weights.taehv_file)
    if conditioning:
        write_tiny_da3(weights.da3_dir, seed=seed + 4)
        write_tiny_florence(weights.florence_dir)
    (root / PROFILE_FILE).write_text(profile_json(vae=TINY_VAE, taehv=TINY_TAEHV, text_encoder=TINY_T5, depth=TINY_DEPTH))
    return weights
