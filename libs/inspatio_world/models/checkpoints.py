"""Reading released checkpoints and loading them into modules with errors that name file and key.

Formats: `.safetensors`, and torch pickles (`.pth`/`.pt`, read with weights_only=True) whose dict
may wrap the weights under `state_dict` or `model`. Values are cast to the module's parameter
dtype (round-to-nearest-even for bf16), as upstream's `.to(bfloat16)` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .dit import CausalDiT, DiTConfig

# Upstream's filter list: Wan base keys that never load into the 36-channel InSpatio DiT.
WAN_BASE_SKIP = ("img_emb.", "cross_attn.k_img", "cross_attn.v_img", "cross_attn.norm_k_img", "patch_embedding")
INSPATIO_PREFIX = "model."


class CheckpointError(RuntimeError):
    """A weight file is missing, unreadable, or does not fit the model; the message names file and key."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weight file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return dict(loaded)


def load_into(module: nn.Module, state: Mapping[str, torch.Tensor], source: str, *, allow_missing: tuple[str, ...] = ()) -> None:
    """Copy `state` into `module` exactly: every parameter present, no unknown key, shapes equal.

    Keys in `allow_missing` may be absent (they keep the module's current values).
    """
    expected = module.state_dict()
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise CheckpointError(f"{source}: unexpected key {unknown[0]!r} ({len(unknown)} unexpected keys in all)")
    missing = sorted(k for k in expected if k not in state and k not in allow_missing)
    if missing:
        raise CheckpointError(f"{source}: missing key {missing[0]!r} ({len(missing)} missing keys in all)")
    for key, value in state.items():
        target = expected[key]
        if tuple(value.shape) != tuple(target.shape):
            raise CheckpointError(f"{source}: key {key!r} has shape {tuple(value.shape)}, the model needs {tuple(target.shape)}")
    with torch.no_grad():
        for key, value in state.items():
            expected[key].copy_(value.to(expected[key].dtype))


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove `prefix` from the keys that start with it (InSpatio files use `model.<DiT key>`)."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: config file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})") from exc


def wan_base_state(wan_dir: str | Path) -> dict[str, torch.Tensor]:
    """The Wan2.1-T2V base DiT weights (every `*diffusion*.safetensors` in the folder), filtered as upstream."""
    wan_dir = Path(wan_dir)
    files = sorted(p for p in wan_dir.glob("*.safetensors") if "diffusion" in p.name)
    if not files:
        raise CheckpointError(f"{wan_dir}: no diffusion_pytorch_model*.safetensors in the Wan folder")
    state: dict[str, torch.Tensor] = {}
    for file in files:
        state.update(read_state_dict(file))
    return {k: v for k, v in state.items() if not any(s in k for s in WAN_BASE_SKIP)}


def build_dit(config: DiTConfig, dtype=torch.float32, device="cpu") -> CausalDiT:
    """An uninitialised DiT (memory allocated, values undefined) ready to receive weights."""
    with torch.device("meta"):
        model = CausalDiT(config)
    return model.to_empty(device=device).to(dtype).eval().requires_grad_(False)


def load_dit(
    inspatio_file: str | Path,
    config: DiTConfig,
    wan_dir: str | Path | None = None,
    dtype=torch.bfloat16,
    device="cpu",
    strict: bool = False,
) -> CausalDiT:
    """The InSpatio-World DiT: its checkpoint, over the Wan base weights where it is partial.

    `strict` (the v1.5 checkpoint): every key from the file, each with the `model.` prefix, none
    missing or unknown, no Wan base.

    The InSpatio file may carry the `model.` prefix or not and must hold `patch_embedding`
    (36 input channels). The released file holds every key, so the Wan base (upstream reads it
    first, then overwrites it) is only read when keys are missing. Weights are loaded in fp32 and
    cast once to `dtype`, so bf16 values round like upstream's `.to(bfloat16)`.
    """
    model = build_dit(config, torch.float32, "cpu")
    raw = read_state_dict(inspatio_file)
    if strict:  # upstream v1.5: load_state_dict(strict=True) onto the wrapper, whose keys all start with `model.`
        wan_dir = None
        unprefixed = sorted(k for k in raw if not k.startswith(INSPATIO_PREFIX))
        if unprefixed:
            raise CheckpointError(f"{inspatio_file}: key {unprefixed[0]!r} lacks the {INSPATIO_PREFIX!r} prefix "
                                  f"({len(unprefixed)} such keys; the v1.5 checkpoint is loaded strictly)")  # fmt: skip
    state = strip_prefix(raw, INSPATIO_PREFIX)
    for key in ("patch_embedding.weight", "patch_embedding.bias"):
        if key not in state:
            raise CheckpointError(f"{inspatio_file}: missing key {INSPATIO_PREFIX + key!r} (the 36-channel input layer)")
    source = str(inspatio_file)
    if wan_dir is not None and set(model.state_dict()) - set(state):
        state = {**wan_base_state(wan_dir), **state}
        source = f"{inspatio_file} over {wan_dir}"
    load_into(model, state, source)
    return model.to(device=device, dtype=dtype)


def init_random_(module: nn.Module, seed: int = 0, std: float = 0.02) -> nn.Module:
    """Fill every parameter with N(0, std²), norm gains with 1 + N(0, std²): tiny and benchmark models."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            generator = torch.Generator(param.device).manual_seed(seed)
            seed += 1
            values = torch.randn(param.shape, generator=generator, device=param.device) * std
            if name.endswith(".gamma") or ("norm" in name and name.endswith(".weight")):
                values += 1.0
            param.copy_(values.to(param.dtype))
    return module
