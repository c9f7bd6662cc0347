"""Random conditioning models in the released folder layouts, at any size (the `tiny` profile,
tests, and `random-full`).

* Florence-2: a native `Florence2ForConditionalGeneration` (spec §8.2) of the sizes in a
  `FlorenceSize` (tiny: ~21k parameters, a 32x32 image in 8x8 patches + 1 pooled token), with a
  character-level BART tokenizer padded with filler tokens to the text model's vocabulary.
* Depth-Anything-3: a preset of the package with random weights (tiny: `da3-small`, 34 M parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

FLORENCE_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<image>", "<mask>"]  # ids 0..5 as in BART
FLORENCE_IMAGE_TOKEN_ID = 4
TINY_DA3_PRESET = "da3-small"
_CHAR_VOCAB = FLORENCE_SPECIAL_TOKENS + ["Ġ"] + [chr(c) for c in range(33, 127)]


@dataclass(frozen=True)
class FlorenceSize:
    """A native Florence-2's sizes: BART text config, DaViT vision config, square input image side.
    `vocab_size` None: the character tokenizer's own size."""

    text: dict = field(default_factory=lambda: dict(
        d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=1, decoder_attention_heads=1,
        encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=256,
    ))  # fmt: skip
    vision: dict = field(default_factory=lambda: dict(
        depths=[1], patch_size=[7], patch_stride=[4], patch_padding=[3], patch_prenorm=[False],
        embed_dim=[16], num_heads=[1], num_groups=[1], window_size=12, projection_dim=16,
    ))  # fmt: skip
    image_size: int = 32
    vocab_size: int | None = None

    @property
    def image_seq_length(self) -> int:
        """Image tokens: one per cell of the last DaViT stage, plus one pooled token."""
        return (self.image_size // math.prod(self.vision["patch_stride"])) ** 2 + 1


TINY_FLORENCE = FlorenceSize()
FLORENCE_IMAGE_SIZE = TINY_FLORENCE.image_size
FLORENCE_IMAGE_SEQ_LENGTH = TINY_FLORENCE.image_seq_length


def tiny_florence_tokenizer(with_image_token: bool = True, vocab_size: int | None = None):
    """Byte-level BPE without merges: one token per printable ASCII character (Ġ = space), then
    filler tokens up to `vocab_size` (so a model of the real vocabulary can decode all its ids)."""
    from transformers import BartTokenizer

    fillers = [f"<f{i}>" for i in range(max(0, (vocab_size or 0) - len(_CHAR_VOCAB)))]
    vocab = {t: i for i, t in enumerate(_CHAR_VOCAB + fillers)}
    extra = {"extra_special_tokens": {"image_token": "<image>"}} if with_image_token else {}
    return BartTokenizer(vocab=vocab, merges=[], model_max_length=1024, **extra)


def tiny_florence_model(vocab_size: int, seed: int = 0, size: FlorenceSize = TINY_FLORENCE, device="cpu"):
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    text = dict(model_type="bart", vocab_size=vocab_size, **size.text, bos_token_id=0, eos_token_id=2, pad_token_id=1,
                decoder_start_token_id=2)  # fmt: skip
    torch.manual_seed(seed)
    if torch.device(device).type == "cuda":
        torch.cuda.manual_seed(seed)
    config = Florence2Config(text_config=text, vision_config=size.vision, image_token_id=FLORENCE_IMAGE_TOKEN_ID)
    with torch.device(device):
        return Florence2ForConditionalGeneration(config).eval()


def write_random_florence(folder: Path, size: FlorenceSize = TINY_FLORENCE, with_image_token: bool = True,
                          device="cpu") -> Path:  # fmt: skip
    from transformers import CLIPImageProcessorPil, Florence2Processor

    tokenizer = tiny_florence_tokenizer(with_image_token, size.vocab_size)
    image_processor = CLIPImageProcessorPil(
        size={"height": size.image_size, "width": size.image_size}, resample=3, do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], image_seq_length=size.image_seq_length,
    )  # fmt: skip
    if with_image_token:
        Florence2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    else:
        tokenizer.save_pretrained(folder)
        image_processor.save_pretrained(folder)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar is noise in `inspatio run`
    tiny_florence_model(len(tokenizer), size=size, device=device).save_pretrained(folder)
    hf_logging.enable_progress_bar()
    return folder


def write_tiny_florence(folder: Path, with_image_token: bool = True) -> Path:
    return write_random_florence(folder, TINY_FLORENCE, with_image_token)


def write_random_da3(folder: Path, preset: str, seed: int = 0, device="cpu") -> Path:
    """A DA3 preset with the package's random initialisation, saved as the released folder (the
    preset's name only, so the loader builds it from the package as it does real weights)."""
    from ..models.depth_checkpoint import build_network, network_config, save_network

    torch.manual_seed(seed)
    if torch.device(device).type == "cuda":
        torch.cuda.manual_seed(seed)
    return save_network(folder, build_network(network_config(preset), device), preset)


def write_tiny_da3(folder: Path, seed: int = 0) -> Path:
    return write_random_da3(folder, TINY_DA3_PRESET, seed)
