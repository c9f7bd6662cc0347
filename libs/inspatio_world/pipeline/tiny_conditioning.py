"""Tiny random conditioning models for the `tiny` profile and tests, in the released folder layouts.

* Florence-2: a ~21k-parameter native `Florence2ForConditionalGeneration` (spec §8.2) with a
  character-level BART tokenizer and a 32x32 image processor (8x8 patches + 1 pooled token).
* Depth-Anything-3: the smallest preset, `da3-small`, with random weights (34 M parameters).
"""

from __future__ import annotations

from pathlib import Path

import torch

FLORENCE_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<image>", "<mask>"]  # ids 0..5 as in BART
FLORENCE_IMAGE_TOKEN_ID = 4
FLORENCE_IMAGE_SIZE = 32  # DaViT with one stage of stride 4: 8x8 patches + 1 pooled token
FLORENCE_IMAGE_SEQ_LENGTH = (FLORENCE_IMAGE_SIZE // 4) ** 2 + 1
TINY_DA3_PRESET = "da3-small"


def tiny_florence_tokenizer(with_image_token: bool = True):
    """Byte-level BPE without merges: one token per printable ASCII character (Ġ = space)."""
    from transformers import BartTokenizer

    vocab = {t: i for i, t in enumerate(FLORENCE_SPECIAL_TOKENS + ["Ġ"] + [chr(c) for c in range(33, 127)])}
    extra = {"extra_special_tokens": {"image_token": "<image>"}} if with_image_token else {}
    return BartTokenizer(vocab=vocab, merges=[], model_max_length=1024, **extra)


def tiny_florence_model(vocab_size: int, seed: int = 0):
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    text = dict(
        model_type="bart", vocab_size=vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=1, decoder_attention_heads=1, encoder_ffn_dim=16, decoder_ffn_dim=16,
        max_position_embeddings=256, bos_token_id=0, eos_token_id=2, pad_token_id=1, decoder_start_token_id=2,
    )  # fmt: skip
    vision = dict(
        depths=[1], patch_size=[7], patch_stride=[4], patch_padding=[3], patch_prenorm=[False],
        embed_dim=[16], num_heads=[1], num_groups=[1], window_size=12, projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(seed)
    config = Florence2Config(text_config=text, vision_config=vision, image_token_id=FLORENCE_IMAGE_TOKEN_ID)
    return Florence2ForConditionalGeneration(config).eval()


def write_tiny_florence(folder: Path, with_image_token: bool = True) -> Path:
    from transformers import CLIPImageProcessorPil, Florence2Processor

    tokenizer = tiny_florence_tokenizer(with_image_token)
    image_processor = CLIPImageProcessorPil(
        size={"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE}, resample=3, do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], image_seq_length=FLORENCE_IMAGE_SEQ_LENGTH,
    )  # fmt: skip
    if with_image_token:
        Florence2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    else:
        tokenizer.save_pretrained(folder)
        image_processor.save_pretrained(folder)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar is noise in `inspatio run`
    tiny_florence_model(len(tokenizer)).save_pretrained(folder)
    hf_logging.enable_progress_bar()
    return folder


def write_tiny_da3(folder: Path, seed: int = 0) -> Path:
    from ..models.depth_checkpoint import build_network, network_config, save_network

    torch.manual_seed(seed)
    return save_network(folder, build_network(network_config(TINY_DA3_PRESET)), TINY_DA3_PRESET)
