"""The random weight writer: what it writes loads strictly through the real loaders (at small
sizes on CPU), and the `random-full` spec has the released architectures (counted on the meta device).

Parameter counts asserted, and where they come from:
  DiT 1.42e9           the "1.3B" Wan2.1 DiT with the 36-channel input (issue 12; 1,419,119,680 built here)
  umT5-XXL encoder     5.68e9 = models_t5_umt5-xxl-enc-bf16.pth's 11.36 GB / 2 bytes
  Wan VAE              1.27e8 = Wan2.1_VAE.pth's 508 MB / 4 bytes
  Florence-2-large     0.77e9 (Microsoft's model card)
  DA3 nested g-l       1689.8 M (spec/conditioning.md §8, measured on the package's preset)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
import torch
from torch import nn

from inspatio_world.models.depth_checkpoint import load_network, read_folder_config
from inspatio_world.models.dit import CausalDiT, DiTConfig
from inspatio_world.models.text_encoder import TextEncoderConfig, build_encoder_model
from inspatio_world.models.wan_vae import WanVAE, WanVAEConfig
from inspatio_world.pipeline.full_weights import DA3_PRESET, FULL
from inspatio_world.pipeline.models import GeneratorModels
from inspatio_world.pipeline.random_weights import write_random_weights
from inspatio_world.pipeline.tiny_conditioning import FlorenceSize, tiny_florence_model, write_random_florence
from inspatio_world.pipeline.tiny_weights import TINY
from inspatio_world.pipeline.weights import WeightsFolder


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def _parameters_on_meta():
    """Every parameter registered meanwhile lives on the meta device (DA3's constructor calls
    .item(), which a plain `torch.device("meta")` context refuses)."""
    original = nn.Module.register_parameter

    def register(self, name, param):
        original(self, name, param)
        if param is not None:
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def test_full_spec_sets_no_architecture_so_loaders_build_the_released_ones():
    assert FULL.profile == {}
    assert FULL.vae == WanVAEConfig() and FULL.text_encoder == TextEncoderConfig() and FULL.dit == DiTConfig()
    assert FULL.text_encoder_dtype == torch.bfloat16  # as the released models_t5_umt5-xxl-enc-bf16.pth


@pytest.mark.parametrize("name, build, expected, tolerance", [
    ("dit", lambda: CausalDiT(FULL.dit), 1.42e9, 0.005),
    ("vae", lambda: WanVAE(FULL.vae), 1.27e8, 0.01),
    ("text_encoder", lambda: build_encoder_model(FULL.text_encoder, torch.bfloat16, "meta"), 5.68e9, 0.005),
    ("florence", lambda: tiny_florence_model(FULL.florence.vocab_size, size=FULL.florence, device="meta"), 0.77e9, 0.01),
])  # fmt: skip
def test_full_models_have_the_released_parameter_counts(name, build, expected, tolerance):
    with torch.device("meta"):
        count = _count(build())
    assert abs(count - expected) <= tolerance * expected, f"{name}: {count:,} parameters"


def test_full_da3_is_the_nested_giant_large_preset():
    from omegaconf import OmegaConf

    from inspatio_world.models.depth_checkpoint import _import_da3, network_config

    create_object, _, _ = _import_da3()
    with _parameters_on_meta():
        network = create_object(OmegaConf.create(network_config(DA3_PRESET)))
    assert abs(_count(network) - 1689.8e6) < 0.1e6


def test_florence_large_image_tokens_match_its_processor():
    assert FULL.florence.image_seq_length == 577  # 768 / 32 = 24 cells squared, plus the pooled token


def test_written_folder_loads_strictly_through_every_loader(tmp_path):
    """Tiny sizes with random-full's choices where they differ: a bf16 umT5 file, a padded Florence vocabulary."""
    from inspatio_world.models.captioner import Captioner

    spec = dataclasses.replace(TINY, text_encoder_dtype=torch.bfloat16, florence=FlorenceSize(vocab_size=200))
    progress = []
    weights = write_random_weights(tmp_path / "w", spec, progress=progress.append)
    assert torch.load(weights.text_encoder_file)["norm.weight"].dtype == torch.bfloat16
    assert weights.is_random and any(line.endswith(" in all") for line in progress)
    models = GeneratorModels.load(weights, torch.device("cpu"), autoencoders=("wan_vae", "taehv"), compile_dit=False)
    assert _count(models.dit) > 0 and models.taehv is not None and models.wan_vae is not None
    name, network = load_network(weights.da3_dir)
    assert name == TINY.da3_preset and read_folder_config(weights.da3_dir)[0] == name
    assert Captioner.from_folder(weights.florence_dir, "cpu").model.config.text_config.vocab_size == 200
    # written again: the complete folder is kept, not rewritten
    before = weights.dit_file.stat().st_mtime_ns
    write_random_weights(tmp_path / "w", spec)
    assert weights.dit_file.stat().st_mtime_ns == before


def test_florence_with_a_padded_vocabulary_loads_and_decodes_every_id(tmp_path):
    """The random-full Florence tokenizer is padded to the model's vocabulary, so any generated id decodes."""
    from inspatio_world.models.captioner import Captioner

    folder = write_random_florence(tmp_path / "florence", FlorenceSize(vocab_size=300))
    captioner = Captioner.from_folder(folder, "cpu")
    assert len(captioner.processor.tokenizer) == 300
    assert json.loads((folder / "config.json").read_text())["text_config"]["vocab_size"] == 300
    assert captioner.model.config.text_config.vocab_size == 300
    tokens = captioner.processor.tokenizer.convert_ids_to_tokens([0, 150, 299, 2])
    assert None not in tokens and tokens[2].startswith("<f")


def test_interrupted_write_is_not_taken_for_complete(tmp_path):
    weights = write_random_weights(tmp_path / "w", TINY, conditioning=False)
    weights.taehv_file.unlink()
    assert WeightsFolder(tmp_path / "w").is_random  # the profile is still there from the complete write
    write_random_weights(tmp_path / "w", TINY, conditioning=False)
    assert weights.taehv_file.is_file()
