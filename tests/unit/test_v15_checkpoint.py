"""The v1.5 checkpoint (InSpatio-World-1.5-1.3B.safetensors): fp32 EMA at the same `model.`-prefixed keys,
written by `inspatio weights` and loaded strictly (upstream v1.5 load_state_dict(strict=True))."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from inspatio_world.models.checkpoints import CheckpointError, build_dit, init_random_, load_dit, read_json
from inspatio_world.models.dit import DiTConfig
from inspatio_world.pipeline.weights import WeightsFolder

TINY = DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=16, text_len=8)


@pytest.fixture
def state():
    return {k: v.clone() for k, v in init_random_(build_dit(TINY), seed=5).state_dict().items()}


def test_weights_folder_names_each_versions_file(tmp_path):
    weights = WeightsFolder(tmp_path)
    assert weights.dit_file == tmp_path / "InSpatio-World-1.3B" / "InSpatio-World-1.3B.safetensors"
    assert weights.for_version("v1_5").dit_file == tmp_path / "InSpatio-World-1.3B" / "InSpatio-World-1.5-1.3B.safetensors"
    assert weights.for_version("v1_5").strict_dit and not weights.strict_dit
    override = WeightsFolder(tmp_path, dit_checkpoint=tmp_path / "mine.safetensors").for_version("v1_5")
    assert override.dit_file == tmp_path / "mine.safetensors"  # INSPATIO_DIT_CHECKPOINT wins for either version
    with pytest.raises(ValueError, match="model_version"):
        WeightsFolder(tmp_path, model_version="v2")


def test_strict_load_takes_every_key_from_the_file(tmp_path, state):
    path = tmp_path / "v15.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in state.items()}, str(path))
    model = load_dit(path, TINY, dtype=torch.float32, strict=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("broken, message", [
    (lambda s: {f"model.{k}": v for k, v in s.items() if k != "head.head.weight"}, "missing key 'head.head.weight'"),
    (lambda s: {**{f"model.{k}": v for k, v in s.items()}, "model.extra.weight": torch.zeros(1)}, "unexpected key 'extra.weight'"),
    (lambda s: dict(s), "lacks the 'model.' prefix"),
])  # fmt: skip
def test_strict_load_refuses_what_upstream_refuses(tmp_path, state, broken, message):
    path = tmp_path / "v15.safetensors"
    save_file({k: v.contiguous() for k, v in broken(state).items()}, str(path))
    with pytest.raises(CheckpointError, match=message) as refused:
        load_dit(path, TINY, dtype=torch.float32, strict=True, wan_dir=tmp_path)  # never completed from a Wan base
    assert str(path) in str(refused.value)


def test_inspatio_weights_writes_the_v15_layout_and_it_loads(tmp_path):
    folder = tmp_path / "w"
    done = subprocess.run([sys.executable, "-m", "inspatio_world.cli", "weights", "tiny", str(folder), "--model-version", "v1_5"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    weights = WeightsFolder(folder).for_version("v1_5")
    with safe_open(str(weights.dit_file), "pt") as handle:
        keys = list(handle.keys())
        assert keys and all(k.startswith("model.") for k in keys)
        assert {handle.get_tensor(k).dtype for k in keys} == {torch.float32}
    assert not WeightsFolder(folder).dit_file.exists()  # only the version asked for
    config = DiTConfig.from_dict(read_json(weights.dit_config_file), in_dim=36)
    model = load_dit(weights.dit_file, config, dtype=torch.float32, strict=True)
    assert model.patch_embedding.weight.shape[1] == 36
