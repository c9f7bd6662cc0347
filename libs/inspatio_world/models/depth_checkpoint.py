"""Depth-Anything-3 checkpoint folders: checking, building the network, loading and saving weights.

Folder layout (what `DepthAnything3.save_pretrained` writes and the HF repos hold; upstream's
`checkpoints/DA3` is `depth-anything/DA3NESTED-GIANT-LARGE`):
    config.json         {"model_name": "da3nested-giant-large"}: a preset of the depth_anything_3 package
                        (da3-small|base|large|giant, da3metric-large, da3mono-large, da3nested-giant-large).
                        Our extension for custom (e.g. tiny test) networks: {"model_name": <any>,
                        "network": <the full network config, in the package's yaml schema>}.
    model.safetensors   the weights, keys "model.<network key>" (the package's wrapper holds the net as .model).

Only the network modules of `depth_anything_3` are imported, never its `api` module: that one
pulls torchvision, pycolmap, trimesh, moviepy and matplotlib for exports we do not use
(requirements-da3.txt lists what is needed).

Loading is strict where upstream's hub mixin is lenient: an unknown key or a wrong shape is an
error naming the file and key. Missing keys are allowed only in modules the InSpatio call never
runs (Gaussian-splat head and adapter, camera encoder for given poses); they keep random values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import CheckpointError, load_into, read_json, read_state_dict

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WRAPPER_PREFIX = "model."
# Submodules that `inference(..., use_ray_pose=False)` without camera inputs and without
# infer_gs never calls; a checkpoint may leave them out.
UNUSED_MODULES = ("gs_head", "gs_adapter", "cam_enc")
INSTALL_HINT = "install it with: pip install --no-deps -r requirements-da3.txt"


def _import_da3() -> tuple[Any, Any, dict[str, str]]:
    # The package prints INFO lines on stdout for every network it builds; keep warnings only.
    os.environ.setdefault("DA3_LOG_LEVEL", "WARN")
    try:
        from depth_anything_3.cfg import create_object, load_config
        from depth_anything_3.registry import MODEL_REGISTRY
    except ImportError as exc:
        raise ImportError(
            f"the depth_anything_3 package (or one of its modules) is missing ({exc}); {INSTALL_HINT}"
        ) from exc
    return create_object, load_config, MODEL_REGISTRY


def network_config(model_name: str) -> dict:
    """The package's config of a preset as a plain dict (e.g. to derive a tiny custom network)."""
    _, load_config, registry = _import_da3()
    from omegaconf import OmegaConf

    if model_name not in registry:
        raise ValueError(f"unknown DA3 preset {model_name!r}; presets: {', '.join(registry)}")
    return OmegaConf.to_container(load_config(registry[model_name]))


def build_network(config: dict, device: torch.device | str = "cpu") -> nn.Module:
    """A randomly initialised DA3 network (`DepthAnything3Net` or `NestedDepthAnything3Net`) in eval mode.

    Built directly on `device`: the package initialises every weight at construction, which takes
    about 36 s on 2 CPU cores for the 1.7 B-parameter nested giant, far less on a GPU.
    """
    create_object, _, _ = _import_da3()
    from omegaconf import OmegaConf

    with torch.device(device):
        network = create_object(OmegaConf.create(config))
    return network.to(device).eval().requires_grad_(False)


def read_folder_config(folder: Path) -> tuple[str, dict]:
    """(model name, network config) from `folder/config.json`; checks files before anything is built."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: DA3 checkpoint folder not found")
    config_path = folder / CONFIG_FILE
    config = read_json(config_path)
    model_name = config.get("model_name") if isinstance(config, dict) else None
    if not isinstance(model_name, str):
        raise CheckpointError(f'{config_path}: needs a "model_name" string (e.g. "da3nested-giant-large")')
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weight file not found")
    if "network" in config:
        if not isinstance(config["network"], dict):
            raise CheckpointError(f'{config_path}: "network" must be an object (a DA3 network config)')
        return model_name, config["network"]
    try:
        return model_name, network_config(model_name)
    except ValueError as exc:
        raise CheckpointError(f"{config_path}: {exc}") from exc


def weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key -> shape from a safetensors header, without reading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc


def check_weights(path: Path, found: dict[str, tuple[int, ...]], network: nn.Module) -> list[str]:
    """Compare a file's keys and shapes (`found`) with the network's; returns the allowed missing keys.

    Allowed missing: keys of unused modules, and aliases of a stored tensor (DA3 shares some head
    layers; `save_pretrained` stores one name per shared tensor).
    """
    state = {WRAPPER_PREFIX + k: v for k, v in network.state_dict().items()}
    unknown = sorted(set(found) - set(state))
    if unknown:
        raise CheckpointError(
            f"{path}: unexpected key {unknown[0]!r} ({len(unknown)} unexpected keys in all; wrong model_name?)"
        )
    for key, shape in found.items():
        if shape != tuple(state[key].shape):
            raise CheckpointError(f"{path}: key {key!r} has shape {shape}, the network needs {tuple(state[key].shape)}")
    stored = {state[k].data_ptr() for k in found}
    missing = sorted(set(state) - set(found))
    required = [
        k for k in missing if state[k].data_ptr() not in stored and not any(f".{m}." in f".{k}" for m in UNUSED_MODULES)
    ]
    if required:
        raise CheckpointError(f"{path}: missing key {required[0]!r} ({len(required)} missing keys in all)")
    return [k[len(WRAPPER_PREFIX) :] for k in missing]


def load_network(folder: str | Path, device: torch.device | str = "cpu") -> tuple[str, nn.Module]:
    """(model name, network with the folder's weights, fp32 on `device`); errors name the file."""
    folder = Path(folder)
    model_name, config = read_folder_config(folder)
    weights = folder / WEIGHTS_FILE
    found = weight_shapes(weights)  # a corrupt file fails here, before the (slow) network build
    network = build_network(config, device)
    allowed_missing = check_weights(weights, found, network)
    state = {k[len(WRAPPER_PREFIX) :]: v for k, v in read_state_dict(weights).items()}
    load_into(network, state, str(weights), allow_missing=tuple(allowed_missing))
    return model_name, network


def save_network(folder: str | Path, network: nn.Module, model_name: str, config: dict | None = None) -> Path:
    """Write `network` in the folder layout above (config.json + model.safetensors), as
    `DepthAnything3.save_pretrained` does: one name per shared tensor.

    `config` (the network config) is stored only for custom networks that are not a preset.
    """
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"model_name": model_name}
    if config is not None:
        meta["network"] = config
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    wrapper = nn.Module()  # gives the keys the package wrapper's "model." prefix
    wrapper.model = network
    save_model(wrapper, str(folder / WEIGHTS_FILE))
    return folder
