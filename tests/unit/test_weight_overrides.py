"""Per-model weight paths (INSPATIO_DIT_CHECKPOINT, INSPATIO_DA3_DIR, INSPATIO_FLORENCE_DIR,
INSPATIO_TAEHV_CHECKPOINT) replace the folder layout's in the checks, the loaders and the model
identities; a wrong one fails naming the variable and the path. INSPATIO_COMPILE reaches the
generator's model loading."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from inspatio_world import envvars
from inspatio_world.jobs.local_stages import (caption_identity, check_caption_weights, check_depth_weights,
                                              depth_identity, generator_identity)  # fmt: skip
from inspatio_world.models.checkpoints import CheckpointError
from inspatio_world.pipeline.models import GeneratorModels
from inspatio_world.pipeline.tiny_conditioning import write_tiny_da3
from inspatio_world.pipeline.tiny_weights import write_tiny_weights
from inspatio_world.pipeline.weights import WeightsFolder, override_env
from inspatio_world.rpc.bootstrap import ServiceSettings

OVERRIDE_VARS = (envvars.DIT_CHECKPOINT, envvars.DA3_DIR, envvars.FLORENCE_DIR, envvars.TAEHV_CHECKPOINT)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> WeightsFolder:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def folder(tmp_path, tiny) -> WeightsFolder:
    """A private copy of the tiny folder, free to be rearranged."""
    return WeightsFolder(Path(shutil.copytree(tiny.root, tmp_path / "checkpoints")))


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    for var in (*OVERRIDE_VARS, envvars.COMPILE):
        monkeypatch.delenv(var.name, raising=False)


def test_without_variables_the_layout_is_used(folder):
    weights = WeightsFolder.from_env(folder.root)
    assert weights == WeightsFolder(folder.root)  # no override field set
    assert weights.dit_file == folder.root / "InSpatio-World-1.3B" / "InSpatio-World-1.3B.safetensors"
    assert weights.da3_dir == folder.root / "DA3" and weights.florence_dir == folder.root / "Florence-2-large"
    assert weights.taehv_file == folder.root / "taehv" / "taew2_1.pth"


def test_dit_checkpoint_elsewhere_is_checked_and_loaded(folder, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "my-dit.safetensors"
    moved.parent.mkdir()
    shutil.move(folder.dit_file, moved)
    with pytest.raises(CheckpointError, match="InSpatio-World-1.3B.safetensors: required weight file not found"):
        WeightsFolder.from_env(folder.root).check("wan_vae")

    monkeypatch.setenv(envvars.DIT_CHECKPOINT.name, str(moved))
    weights = WeightsFolder.from_env(folder.root)
    assert weights.dit_file == moved and weights == WeightsFolder(folder.root, dit_checkpoint=moved)  # that override alone
    for decoder in ("wan_vae", "taehv"):
        weights.check(decoder)
    models = GeneratorModels.load(weights, torch.device("cpu"), ("wan_vae", "taehv"), compile_dit=False)
    stored = load_file(str(moved))["model.patch_embedding.weight"]
    assert torch.equal(models.dit.patch_embedding.weight.detach().cpu(), stored.to(models.dtype))
    assert models.wan_vae is not None and models.taehv is not None


def test_a_missing_override_names_the_variable_and_the_path(folder, tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "dit.safetensors"
    monkeypatch.setenv(envvars.DIT_CHECKPOINT.name, str(missing))
    weights = WeightsFolder.from_env(folder.root)
    message = f"{envvars.DIT_CHECKPOINT.name}={missing}: file not found"
    with pytest.raises(CheckpointError, match=message):
        weights.check("wan_vae")
    with pytest.raises(CheckpointError, match=message):
        GeneratorModels.load(weights, torch.device("cpu"), compile_dit=False)

    monkeypatch.setenv(envvars.TAEHV_CHECKPOINT.name, str(tmp_path / "taew.pth"))
    monkeypatch.setenv(envvars.DA3_DIR.name, str(folder.dit_file))  # a file where a folder belongs
    monkeypatch.setenv(envvars.FLORENCE_DIR.name, str(tmp_path / "florence"))
    monkeypatch.delenv(envvars.DIT_CHECKPOINT.name)
    weights = WeightsFolder.from_env(folder.root)
    weights.check("wan_vae")  # TAEHV's path is only needed with TAEHV
    with pytest.raises(CheckpointError, match=f"{envvars.TAEHV_CHECKPOINT.name}=.*taew.pth: file not found"):
        weights.check("taehv")
    with pytest.raises(CheckpointError, match=f"{envvars.DA3_DIR.name}=.*InSpatio-World-1.3B.safetensors: not a folder"):
        check_depth_weights(weights)
    with pytest.raises(CheckpointError, match=f"{envvars.FLORENCE_DIR.name}=.*florence: folder not found"):
        check_caption_weights(weights)


def test_an_incomplete_override_folder_names_the_file_and_the_variable(folder, tmp_path, monkeypatch):
    empty = tmp_path / "DA3-empty"
    empty.mkdir()
    monkeypatch.setenv(envvars.DA3_DIR.name, str(empty))
    with pytest.raises(CheckpointError, match=f"model.safetensors: required weight file not found \\(in {envvars.DA3_DIR.name}="):
        check_depth_weights(WeightsFolder.from_env(folder.root))


def test_identities_follow_the_overrides(folder, tmp_path, monkeypatch):
    plain = WeightsFolder.from_env(folder.root)
    other_da3 = tmp_path / "DA3-other"
    write_tiny_da3(other_da3, seed=99)  # another DA3: other weights
    florence = Path(shutil.copytree(folder.florence_dir, tmp_path / "models" / "Florence-2-large"))
    moved_dit = tmp_path / "dit" / "InSpatio-World-1.3B.safetensors"
    moved_dit.parent.mkdir()
    shutil.copy(folder.dit_file, moved_dit)
    monkeypatch.setenv(envvars.DA3_DIR.name, str(other_da3))
    monkeypatch.setenv(envvars.FLORENCE_DIR.name, str(florence))
    monkeypatch.setenv(envvars.DIT_CHECKPOINT.name, str(moved_dit))
    moved = WeightsFolder.from_env(folder.root)
    check_depth_weights(moved)
    assert depth_identity(moved).digest != depth_identity(plain).digest  # other DA3 weights, other cache keys
    # the same files under another path: the same identity (identities hash content, not places)
    assert caption_identity(moved) == caption_identity(plain)
    assert generator_identity(moved, ("wan_vae",)) == generator_identity(plain, ("wan_vae",))
    with moved_dit.open("r+b") as handle:  # a different DiT checkpoint: a different identity
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\x00" * 8)
    assert generator_identity(moved, ("wan_vae",)) != generator_identity(plain, ("wan_vae",))


def test_services_take_the_overrides_from_the_environment(folder, tmp_path, monkeypatch):
    monkeypatch.setenv(envvars.WEIGHTS.name, str(folder.root))
    monkeypatch.setenv(envvars.DA3_DIR.name, str(tmp_path / "da3"))
    weights = ServiceSettings.from_env("depthrender").weights()
    assert weights.root == folder.root and weights.da3_dir == tmp_path / "da3"
    with pytest.raises(CheckpointError, match=envvars.DA3_DIR.name):
        check_depth_weights(weights)


def test_override_env_gives_absolute_paths_for_the_given_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert override_env() == {}
    env = override_env(dit_checkpoint="ckpt/dit.safetensors", da3_dir=tmp_path / "DA3")
    assert env == {envvars.DIT_CHECKPOINT.name: str(tmp_path / "ckpt" / "dit.safetensors"), envvars.DA3_DIR.name: str(tmp_path / "DA3")}
    env = override_env(florence_dir="/m/Florence-2-large", taehv_checkpoint="/m/taew2_1.pth")
    assert env == {envvars.FLORENCE_DIR.name: "/m/Florence-2-large", envvars.TAEHV_CHECKPOINT.name: "/m/taew2_1.pth"}
    monkeypatch.setenv(envvars.WEIGHTS.name, "/w")
    for name, value in override_env(dit_checkpoint="a", da3_dir="b", florence_dir="c", taehv_checkpoint="d").items():
        monkeypatch.setenv(name, value)
    weights = WeightsFolder.from_env("/w")
    assert (weights.dit_file, weights.da3_dir, weights.florence_dir, weights.taehv_file) == tuple(tmp_path / n for n in "abcd")


@pytest.mark.parametrize(("value", "expected"), [("auto", None), ("AUTO", None), ("1", True), ("0", False), (" 0 ", False)])
def test_compile_setting_reads_auto_1_and_0(monkeypatch, value, expected):
    monkeypatch.setenv(envvars.COMPILE.name, value)
    assert envvars.get_auto_flag(envvars.COMPILE) is expected


def test_compile_setting_defaults_to_auto_and_refuses_anything_else(monkeypatch):
    assert envvars.get_auto_flag(envvars.COMPILE) is None
    for value in ("yes", "true", "", "2"):
        monkeypatch.setenv(envvars.COMPILE.name, value)
        with pytest.raises(ValueError, match=f"{envvars.COMPILE.name}={value!r}: expected auto, 0 or 1"):
            envvars.get_auto_flag(envvars.COMPILE)


class _Loaded(Exception):
    pass


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("1", True), ("0", False)])
def test_generator_service_passes_the_compile_setting_to_the_models(folder, monkeypatch, value, expected):
    from services.generator import main as generator_main

    seen = {}

    def fake_load(weights, device, autoencoders, **options):
        seen.update(options, weights=weights, autoencoders=autoencoders)
        raise _Loaded()

    monkeypatch.setattr(generator_main.GeneratorModels, "load", fake_load)
    monkeypatch.setenv(envvars.WEIGHTS.name, str(folder.root))
    if value is not None:
        monkeypatch.setenv(envvars.COMPILE.name, value)
    server = SimpleNamespace(metrics=SimpleNamespace(set_model=lambda *args: None))
    with pytest.raises(_Loaded):
        generator_main.load(ServiceSettings.from_env("generator"), None, server)
    assert seen["compile_dit"] is expected and seen["autoencoders"] == ("wan_vae", "taehv")


def test_generator_service_start_fails_cleanly_on_bad_settings(folder, tmp_path, monkeypatch):
    from services.generator import main as generator_main

    server = SimpleNamespace(metrics=SimpleNamespace(set_model=lambda *args: None))
    monkeypatch.setenv(envvars.WEIGHTS.name, str(folder.root))
    monkeypatch.setenv(envvars.COMPILE.name, "maybe")
    with pytest.raises(ValueError, match=envvars.COMPILE.name):
        generator_main.load(ServiceSettings.from_env("generator"), None, server)
    monkeypatch.delenv(envvars.COMPILE.name)
    # a TAEHV named by its variable is required, not silently dropped
    monkeypatch.setenv(envvars.TAEHV_CHECKPOINT.name, str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match=f"{envvars.TAEHV_CHECKPOINT.name}=.*missing.pth: file not found"):
        generator_main.load(ServiceSettings.from_env("generator"), None, server)
    monkeypatch.delenv(envvars.TAEHV_CHECKPOINT.name)
    monkeypatch.setenv(envvars.DIT_CHECKPOINT.name, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match=f"{envvars.DIT_CHECKPOINT.name}=.*missing.safetensors: file not found"):
        generator_main.load(ServiceSettings.from_env("generator"), None, server)
