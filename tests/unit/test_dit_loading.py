"""DiT checkpoint loading: released layouts load; anything that does not fit fails naming file and key."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from inspatio_world.models.checkpoints import CheckpointError, build_dit, init_random_, load_dit
from inspatio_world.models.dit import DiTConfig

TINY = DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=16, text_len=8)


@pytest.fixture
def state():
    model = init_random_(build_dit(TINY), seed=3)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _save(path, state, prefix=""):
    save_file({prefix + k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def test_prefixed_and_plain_files_load_identically(tmp_path, state):
    a = load_dit(_save(tmp_path / "a.safetensors", state, "model."), TINY, dtype=torch.float32)
    b = load_dit(_save(tmp_path / "b.safetensors", state), TINY, dtype=torch.float32)
    for key, value in state.items():
        assert torch.equal(a.state_dict()[key], value)
        assert torch.equal(b.state_dict()[key], value)


def test_bf16_cast_rounds_to_nearest_even(tmp_path, state):
    model = load_dit(_save(tmp_path / "w.safetensors", state, "model."), TINY, dtype=torch.bfloat16)
    key = "blocks.0.ffn.0.weight"
    assert model.state_dict()[key].dtype == torch.bfloat16
    assert torch.equal(model.state_dict()[key], state[key].to(torch.bfloat16))


def test_inspatio_file_over_wan_base(tmp_path, state):
    wan = tmp_path / "wan"
    wan.mkdir()
    base = {k: torch.zeros_like(v) for k, v in state.items()}
    base["patch_embedding.weight"] = torch.zeros(TINY.dim, 16, 1, 2, 2)  # the 16-channel T2V input: filtered out
    _save(wan / "diffusion_pytorch_model.safetensors", base)
    partial = {k: v for k, v in state.items() if k.startswith(("patch_embedding", "blocks.1."))}
    model = load_dit(_save(tmp_path / "i.safetensors", partial, "model."), TINY, wan_dir=wan, dtype=torch.float32)
    loaded = model.state_dict()
    assert torch.equal(loaded["blocks.1.self_attn.q.weight"], state["blocks.1.self_attn.q.weight"])
    assert torch.count_nonzero(loaded["blocks.0.self_attn.q.weight"]) == 0  # from the base


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.safetensors: weight file not found"):
        load_dit(tmp_path / "nope.safetensors", TINY)


def test_missing_key_is_named(tmp_path, state):
    del state["blocks.1.cross_attn.k.bias"]
    path = _save(tmp_path / "w.safetensors", state, "model.")
    with pytest.raises(CheckpointError, match=r"w\.safetensors.*missing key 'blocks\.1\.cross_attn\.k\.bias'"):
        load_dit(path, TINY)


def test_wrong_shape_is_named(tmp_path, state):
    state["head.head.weight"] = torch.zeros(3, TINY.dim)
    path = _save(tmp_path / "w.safetensors", state, "model.")
    with pytest.raises(CheckpointError, match=r"key 'head\.head\.weight' has shape \(3, 32\)"):
        load_dit(path, TINY)


def test_unexpected_key_is_named(tmp_path, state):
    state["blocks.9.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected key 'blocks.9.extra'"):
        load_dit(_save(tmp_path / "w.safetensors", state, "model."), TINY)


def test_16_channel_patch_embedding_is_rejected(tmp_path, state):
    state["patch_embedding.weight"] = torch.zeros(TINY.dim, 16, 1, 2, 2)
    with pytest.raises(CheckpointError, match="patch_embedding.weight"):
        load_dit(_save(tmp_path / "w.safetensors", state, "model."), TINY)


def test_corrupt_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        load_dit(path, TINY)


def test_config_from_wan_json_ignores_private_and_unknown_keys():
    raw = {"_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": 1536, "eps": 1e-06, "ffn_dim": 8960,
           "freq_dim": 256, "in_dim": 16, "model_type": "t2v", "num_heads": 12, "num_layers": 30, "out_dim": 16,
           "text_len": 512, "some_future_key": 1}
    config = DiTConfig.from_dict(raw, in_dim=36)
    assert config == DiTConfig()
