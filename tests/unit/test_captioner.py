"""Florence-2 captioner: frame choice, upstream's generation settings, post-processing, folder checks.

A tiny random native Florence-2 (spec §8.2) with a matching tiny processor is saved to a temporary
folder and loaded back through `Captioner.from_folder`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from inspatio_world.pipeline.tiny_conditioning import (
    FLORENCE_IMAGE_SEQ_LENGTH,
    FLORENCE_IMAGE_SIZE,
    FLORENCE_IMAGE_TOKEN_ID,
    write_tiny_florence,
)
from inspatio_world.models.captioner import GENERATION_KWARGS, TASK, Captioner, clean_caption, middle_frame
from inspatio_world.models.checkpoints import CheckpointError

IMAGE_TOKEN_ID = FLORENCE_IMAGE_TOKEN_ID
IMAGE_SIZE = FLORENCE_IMAGE_SIZE
IMAGE_SEQ_LENGTH = FLORENCE_IMAGE_SEQ_LENGTH
PROMPT = "Describe with a paragraph what is shown in the image."
write_tiny_folder = write_tiny_florence


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_tiny_folder(tmp_path_factory.mktemp("florence"))


@pytest.fixture(scope="module")
def captioner(tiny_folder):
    return Captioner.from_folder(tiny_folder, device="cpu")


@pytest.fixture
def frames():
    """5 frames of distinct constant colours, 40x48 (not square, so the 32x32 squash matters)."""
    return np.stack([np.full((40, 48, 3), 40 * i, dtype=np.uint8) for i in range(5)])


@pytest.fixture
def recorded_generate(captioner, monkeypatch):
    """Replace generate with a recorder returning fixed ids: </s> <s> "ok" </s> <pad>."""
    calls = []
    ids = captioner.processor.tokenizer.convert_tokens_to_ids(["</s>", "<s>", "o", "k", "</s>", "<pad>"])

    def fake_generate(**kwargs):
        calls.append(kwargs)
        return torch.tensor([ids] * len(kwargs["input_ids"]))

    monkeypatch.setattr(captioner.model, "generate", fake_generate)
    return calls


def test_the_middle_frame_is_captioned(captioner, frames, recorded_generate):
    assert captioner.caption_video(frames) == "ok"
    expected = captioner.processor.image_processor(images=Image.fromarray(frames[2]), return_tensors="pt")[
        "pixel_values"
    ]
    (call,) = recorded_generate
    assert torch.equal(call["pixel_values"], expected)
    assert call["pixel_values"].shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)


def test_generation_uses_upstreams_settings_and_prompt(captioner, frames, recorded_generate):
    captioner.caption_video(frames)
    (call,) = recorded_generate
    assert set(call) == {"input_ids", "pixel_values", *GENERATION_KWARGS}
    assert {k: call[k] for k in GENERATION_KWARGS} == {
        "num_beams": 1,
        "do_sample": False,
        "max_new_tokens": 1024,
        "no_repeat_ngram_size": 3,
        "forced_bos_token_id": 0,
        "forced_eos_token_id": 2,
        "use_cache": False,
    }
    ids = call["input_ids"][0].tolist()
    assert ids[:IMAGE_SEQ_LENGTH] == [IMAGE_TOKEN_ID] * IMAGE_SEQ_LENGTH
    assert captioner.processor.tokenizer.decode(ids[IMAGE_SEQ_LENGTH:]) == f"<s>{PROMPT}</s>"


def test_checkpoint_generation_config_is_ignored(tiny_folder, tmp_path):
    for item in tiny_folder.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    config = json.loads((tmp_path / "generation_config.json").read_text())
    (tmp_path / "generation_config.json").write_text(json.dumps({**config, "num_beams": 3, "repetition_penalty": 2.0}))
    generation = Captioner.from_folder(tmp_path, device="cpu").model.generation_config
    assert generation.num_beams in (None, 1) and generation.repetition_penalty in (None, 1.0)  # None: library default
    assert (generation.decoder_start_token_id, generation.bos_token_id, generation.eos_token_id) == (2, 0, 2)


def test_real_generation_gives_plain_text(captioner, frames):
    # Bound the random model's output: no unk/image/mask tokens, and EOS at the 10th decoding step.
    steps = []

    def steer(module, args, logits):
        steps.append(1)
        logits[..., 3:6] = -torch.inf
        if len(steps) >= 10:
            logits[..., -1, 2] = 1e4
        return logits

    handle = captioner.model.lm_head.register_forward_hook(steer)
    try:
        caption = captioner.caption_video(frames)
    finally:
        handle.remove()
    assert isinstance(caption, str) and 0 < len(caption) <= 9
    assert not any(token in caption for token in ("<s>", "</s>", "<pad>"))


def test_prompt_replaces_the_caption_without_running_the_model(captioner, frames, monkeypatch):
    monkeypatch.setattr(captioner.model, "generate", lambda **kw: pytest.fail("the model must not run"))
    assert captioner.caption_video(frames, prompt="A dog runs on a beach.") == "A dog runs on a beach."


def test_cpu_loading_is_fp32_with_eager_attention(captioner):
    assert captioner.dtype == torch.float32 and next(captioner.model.parameters()).dtype == torch.float32
    assert captioner.model.config._attn_implementation == "eager"


def test_clean_caption_removes_only_sequence_tokens():
    assert clean_caption("</s><s>A red car.</s><pad><pad>") == "A red car."
    assert clean_caption("</s><s> spaced <unk></s>") == " spaced <unk>"  # upstream strips nothing else


def test_middle_frame_index():
    assert middle_frame(list("abcd")) == "c" and middle_frame(list("abcde")) == "c" and middle_frame(["a"]) == "a"
    with pytest.raises(ValueError, match="without frames"):
        middle_frame([])


def test_tokenizer_without_image_token_uses_the_config_id(tmp_path):
    captioner = Captioner.from_folder(write_tiny_folder(tmp_path, with_image_token=False), device="cpu")
    assert captioner.processor.image_token == "<image>" and captioner.processor.image_token_id == IMAGE_TOKEN_ID


def test_rejects_non_uint8_images(captioner):
    with pytest.raises(ValueError, match="uint8 RGB"):
        captioner.caption_images([np.zeros((8, 8, 3), np.float32)])


@pytest.fixture
def folder_copy(tiny_folder, tmp_path):
    for item in tiny_folder.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    return tmp_path


@pytest.mark.parametrize(
    "remove, message",
    [
        ("config.json", "config.json: config file not found"),
        ("model.safetensors", "weights file not found"),
        ("tokenizer.json", "tokenizer file not found"),
        ("processor_config.json", "image processor config file not found"),
    ],
)
def test_missing_files_are_named(folder_copy, remove, message):
    (folder_copy / remove).unlink()
    with pytest.raises(CheckpointError, match=message):
        Captioner.from_folder(folder_copy, device="cpu")


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="folder not found"):
        Captioner.from_folder(tmp_path / "nope")


def test_remote_code_layout_is_refused_with_a_hint(folder_copy):
    config = json.loads((folder_copy / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_florence2.Florence2ForConditionalGeneration"}
    (folder_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="florence-community/Florence-2-large"):
        Captioner.from_folder(folder_copy, device="cpu")


def test_incomplete_or_mismatched_weights(folder_copy):
    state = load_file(str(folder_copy / "model.safetensors"))
    key = next(k for k in state if "decoder.layers.0.fc1.weight" in k)
    save_file(
        {k: v for k, v in state.items() if k != key}, str(folder_copy / "model.safetensors"), metadata={"format": "pt"}
    )
    with pytest.raises(CheckpointError, match=f"missing keys '{key}'"):
        Captioner.from_folder(folder_copy, device="cpu")
    save_file({**state, key: torch.zeros(3, 3)}, str(folder_copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="cannot load Florence-2 weights"):
        Captioner.from_folder(folder_copy, device="cpu")


def test_task_token():
    assert TASK == "<MORE_DETAILED_CAPTION>"


def test_a_capped_length_reaches_generate_and_comes_from_the_environment(tiny_folder, frames, monkeypatch):
    monkeypatch.setenv("INSPATIO_CAPTION_MAX_NEW_TOKENS", "7")
    capped = Captioner.from_folder(tiny_folder, device="cpu")
    assert capped.max_new_tokens == 7
    calls = []
    monkeypatch.setattr(capped.model, "generate", lambda **kw: calls.append(kw) or torch.tensor([[2, 0, 2]]))
    capped.caption_video(frames)
    assert calls[0]["max_new_tokens"] == 7
    # the cap only cuts the length; every other decoding choice stays upstream's
    assert {k: v for k, v in calls[0].items() if k in GENERATION_KWARGS and k != "max_new_tokens"} == {
        k: v for k, v in GENERATION_KWARGS.items() if k != "max_new_tokens"
    }


def test_a_capped_caption_is_cached_apart_from_upstreams(tiny_folder, captioner):
    from inspatio_world.stages.caption import caption_options

    assert caption_options(captioner) == {}  # upstream's length: the cache key it always had
    assert caption_options(Captioner(captioner.model, captioner.processor, captioner.device, captioner.dtype, 128)) == {
        "max_new_tokens": 128
    }
