"""Parity runner for the umT5 text encoder: token ids and mask in, raw output and prompt_embeds out.

The tokenizer is bypassed (the case gives ids/mask); sizes come from the case's `model_config.json`.
"""

from __future__ import annotations

import torch

from ...models.text_encoder import TextEncoderConfig, load_text_encoder, zero_padding_rows
from ..case import ParityCase
from . import runner


@runner("wan/modules/t5.py T5Encoder")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    config = TextEncoderConfig.from_dict(case.model_config)
    encoder = load_text_encoder(case.weights_path, dtype=case.dtype, device=device, config=config)
    mask = case.inputs["mask"]
    raw = encoder.encode_ids(case.inputs["ids"], mask)
    return {"encoder_raw": raw, "prompt_embeds": zero_padding_rows(raw, mask)}
