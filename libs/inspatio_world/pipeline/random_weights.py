"""Random weights written in the released file layout, at any size: the `tiny` and `random-full` profiles.

One writer for both: a `RandomWeights` spec gives every model's architecture (and the dtype a file
stores), and the files go through exactly the loading code of real weights. `inspatio_profile.json`
marks the folder as random (consumers say loudly that its pictures are meaningless) and carries
the architectures that differ from the released ones (none for `random-full`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

from ..models.checkpoints import build_dit, init_random_
from ..models.dit import DiTConfig
from ..models.taehv import TAEHV, TAEHVConfig
from ..models.text_encoder import TextEncoderConfig, build_encoder_model, hf_keys, wan_keys
from ..models.wan_vae import WanVAEConfig, build_wan_vae
from .tiny_conditioning import FlorenceSize, write_random_da3, write_random_florence
from .weights import PROFILE_FILE, WeightsFolder, profile_json

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in the umT5 vocabulary
WORDS = (
    "a an the of in on at with and to is are from by into over under near its this that there "
    "street road car cars person people man woman tree trees building buildings sky cloud clouds "
    "water river sea room table chair window door light sun shadow wall floor grass field city"
).split()


@dataclass(frozen=True)
class RandomWeights:
    """Every model's size; `profile` holds the configs the loaders must read from the profile file
    (those that differ from the released architecture), by the file's key."""

    dit: DiTConfig
    vae: WanVAEConfig
    taehv: TAEHVConfig
    text_encoder: TextEncoderConfig
    text_encoder_dtype: torch.dtype  # the released umT5 file is bf16
    da3_preset: str
    florence: FlorenceSize
    profile: dict = field(default_factory=dict)  # e.g. {"vae": WanVAEConfig(dim=8), "depth": DepthSettings(...)}
    std: dict = field(default_factory=lambda: {"dit": 0.05, "vae": 0.1, "text_encoder": 0.1, "taehv": 0.05})


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


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's tensors copied to host memory (files are written from there)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def disk_size(*paths: Path) -> str:
    """Bytes on disk of files and folders, in MiB or GiB."""
    files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*") if p.is_dir() else []) if f.is_file()]
    size = sum(f.stat().st_size for f in files)
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def write_random_weights(root: Path, spec: RandomWeights, seed: int = 0, conditioning: bool = True,
                         device: torch.device | str = "cpu", progress: Callable[[str], None] = lambda _: None,
                         model_versions: tuple[str, ...] = ("v1",)) -> WeightsFolder:  # fmt: skip
    """Write a complete random weight folder (idempotent: an existing complete folder is kept).

    Models are built and initialised on `device` (a GPU makes the full sizes quick) and written from
    host memory. `conditioning=False` skips DA3 and Florence-2 (the generator alone). `model_versions`:
    whose DiT checkpoints to write (v1_5: InSpatio-World-1.5-1.3B.safetensors, other random values,
    the same `model.`-prefixed fp32 layout)."""
    weights = WeightsFolder(root)
    needed = [weights.for_version(v).dit_file for v in model_versions] + [weights.taehv_file, weights.tokenizer_dir]
    if conditioning:
        needed += [weights.da3_dir / "model.safetensors", weights.florence_dir / "config.json"]
    if weights.is_random and all(p.exists() for p in needed):
        progress(f"{root}: complete, kept")
        return weights
    (root / PROFILE_FILE).unlink(missing_ok=True)  # an interrupted write is never taken for a complete one
    for folder in (weights.dit_file.parent, weights.taehv_file.parent, weights.tokenizer_dir):
        folder.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)

    def step(what: str, write: Callable[[], None], *paths: Path) -> None:
        started = time.perf_counter()
        write()
        progress(f"{what}: {disk_size(*paths)} in {time.perf_counter() - started:.1f} s")

    def write_dit() -> None:
        # The InSpatio file holds every key (`model.` prefix, 36-channel patch_embedding, fp32 EMA);
        # the Wan base file is the original layout without the 36-channel input layer.
        dit = cpu_state(init_random_(build_dit(spec.dit, torch.float32, device), seed=seed, std=spec.std["dit"]))
        if "v1" in model_versions:
            save_file({f"model.{k}": v for k, v in dit.items()}, str(weights.dit_file))
        if "v1_5" in model_versions:
            v15 = cpu_state(init_random_(build_dit(spec.dit, torch.float32, device), seed=seed + 5, std=spec.std["dit"]))
            save_file({f"model.{k}": v for k, v in v15.items()}, str(weights.for_version("v1_5").dit_file))
            del v15
        save_file({k: v for k, v in dit.items() if not k.startswith("patch_embedding")},
                  str(weights.wan_dir / "diffusion_pytorch_model.safetensors"))  # fmt: skip
        wan_config = {k: v for k, v in json.loads(profile_json(dit=spec.dit))["dit"].items() if k != "patch_size"}
        weights.dit_config_file.write_text(json.dumps({"_class_name": "WanModel", **wan_config, "in_dim": 16}, indent=2))

    def write_vae() -> None:
        torch.save(cpu_state(init_random_(build_wan_vae(spec.vae, device=device), seed=seed + 1, std=spec.std["vae"])), weights.vae_file)

    def write_text_encoder() -> None:
        model = build_encoder_model(spec.text_encoder, spec.text_encoder_dtype, device)
        hf_state = cpu_state(init_random_(model, seed=seed + 2, std=spec.std["text_encoder"]))
        del model
        torch.save({key: hf_state[hf_keys(key)[0]] for key in wan_keys(spec.text_encoder)}, weights.text_encoder_file)
        write_tokenizer(weights.tokenizer_dir)

    def write_taehv() -> None:
        with torch.device(device):
            taehv = TAEHV(spec.taehv)
        torch.save(cpu_state(init_random_(taehv, seed=seed + 3, std=spec.std["taehv"])), weights.taehv_file)

    dit_files = [weights.for_version(v).dit_file for v in model_versions]
    step("DiT (InSpatio-World + Wan base)", write_dit, *dit_files, weights.wan_dir / "diffusion_pytorch_model.safetensors")
    step("Wan VAE", write_vae, weights.vae_file)
    step("umT5 text encoder", write_text_encoder, weights.text_encoder_file)
    step("TAEHV", write_taehv, weights.taehv_file)
    if conditioning:
        step(f"DA3 ({spec.da3_preset})", lambda: write_random_da3(weights.da3_dir, spec.da3_preset, seed + 4, device), weights.da3_dir)
        step("Florence-2", lambda: write_random_florence(weights.florence_dir, spec.florence, device=device), weights.florence_dir)
    _empty_cache(device)
    (root / PROFILE_FILE).write_text(profile_json(**spec.profile))
    progress(f"{root}: {disk_size(root)} in all")
    return weights


def _empty_cache(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
