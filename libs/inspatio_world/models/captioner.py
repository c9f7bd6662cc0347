"""Step 1: one caption per video from Florence-2 (`<MORE_DETAILED_CAPTION>` on the middle frame).

Reproduces upstream's scripts/gen_json.py with transformers' native Florence-2 classes:
  - frame: index n // 2 of the video's decoded frames, uint8 RGB [H, W, 3] at full resolution;
  - image: squashed to 768x768 (bicubic, aspect ratio ignored), x / 255, ImageNet mean/std;
  - prompt: the task token, which the processor turns into "Describe with a paragraph what is
    shown in the image." after the 577 image tokens;
  - decoding: greedy, no_repeat_ngram_size 3, BOS forced first and EOS forced at the length limit,
    at most 1024 new tokens, no KV cache. Upstream (transformers 4.x remote code) inherited these
    silently from the checkpoint's text config; transformers 5 does not, so they are passed
    explicitly (GENERATION_KWARGS) and the checkpoint's generation_config.json is ignored;
  - text: decoded with special tokens, then "<pad>", "<s>" and "</s>" removed, nothing stripped.
A user prompt, when given, is the caption and no model runs.

Checkpoint folder (the *converted* layout that the native classes read, e.g.
`florence-community/Florence-2-large`, obtained with `huggingface-cli download
florence-community/Florence-2-large --local-dir <folder>` on a machine with hub access):
    config.json                                   model_type "florence2", text_config.model_type "bart"
    model.safetensors (or model.safetensors.index.json + shards)
    tokenizer.json (or vocab.json + merges.txt)   BART byte-level BPE with an "<image>" token
    preprocessor_config.json or processor_config.json   CLIP image processor, image_seq_length 577
Upstream's `microsoft/Florence-2-large` folder is the remote-code layout (auto_map,
pytorch_model.bin, text_config "florence2_language"); it is refused with a message saying so.
Device and precision as upstream: fp16 on CUDA, fp32 on CPU, eager attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .. import envvars
from .checkpoints import CheckpointError, read_json

TASK = "<MORE_DETAILED_CAPTION>"
# Upstream's effective decoding settings (spec §1.3): its explicit generate() arguments plus
# what the remote model inherited from the checkpoint's text config.
GENERATION_KWARGS = {
    "num_beams": 1,
    "do_sample": False,
    "max_new_tokens": 1024,
    "no_repeat_ngram_size": 3,
    "forced_bos_token_id": 0,
    "forced_eos_token_id": 2,
    "use_cache": False,
}
REMOVED_TOKENS = ("<pad>", "<s>", "</s>")
REMOTE_CODE_HINT = (
    "is the remote-code Florence-2 layout (microsoft/Florence-2-*); the native transformers classes need "
    "the converted checkpoint, e.g. florence-community/Florence-2-large"
)


def middle_frame(frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Frame n // 2 of a video's decoded frames (the one upstream captions)."""
    if len(frames) == 0:
        raise ValueError("cannot caption a video without frames")
    return frames[len(frames) // 2]


def clean_caption(decoded: str) -> str:
    """Decoded text with special tokens -> caption: drop <pad>, <s>, </s>, keep all other text as is."""
    for token in REMOVED_TOKENS:
        decoded = decoded.replace(token, "")
    return decoded


def check_folder(folder: Path) -> dict:
    """Check the files of a converted Florence-2 folder before loading anything; returns config.json."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: Florence-2 checkpoint folder not found")
    config_path = folder / "config.json"
    config = read_json(config_path)
    if "auto_map" in config or config.get("text_config", {}).get("model_type") != "bart":
        raise CheckpointError(f"{config_path}: {REMOTE_CODE_HINT}")
    if config.get("model_type") != "florence2":
        raise CheckpointError(f"{config_path}: model_type is {config.get('model_type')!r}, expected 'florence2'")
    required = {
        "weights": (("model.safetensors",), ("model.safetensors.index.json",)),
        "tokenizer": (("tokenizer.json",), ("vocab.json", "merges.txt")),
        "image processor config": (("preprocessor_config.json",), ("processor_config.json",)),
    }
    for what, choices in required.items():
        if not any(all((folder / name).is_file() for name in names) for names in choices):
            expected = " or ".join(" + ".join(names) for names in choices)
            raise CheckpointError(f"{folder}: {what} file not found (expected {expected})")
    return config


class Captioner:
    """Florence-2 model + processor on one device. Build it with `from_folder`."""

    def __init__(self, model, processor, device: torch.device, dtype: torch.dtype,
                 max_new_tokens: int = GENERATION_KWARGS["max_new_tokens"]) -> None:  # fmt: skip
        self.model = model
        self.processor = processor
        self.device = device
        self.dtype = dtype
        # Upstream's 1024 unless capped (INSPATIO_CAPTION_MAX_NEW_TOKENS): a capped caption may be cut short.
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_folder(cls, folder: str | Path, device: torch.device | str | None = None, max_new_tokens: int | None = None) -> Captioner:
        """`max_new_tokens` None: INSPATIO_CAPTION_MAX_NEW_TOKENS (upstream's 1024 by default)."""
        from transformers import (
            AutoTokenizer,
            CLIPImageProcessorPil,
            Florence2ForConditionalGeneration,
            Florence2Processor,
            GenerationConfig,
        )

        folder = Path(folder)
        config = check_folder(folder)
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        # WHY the PIL image processor: upstream's (slow) CLIP processor resized with PIL; the
        # torchvision variant resamples differently.
        image_processor = CLIPImageProcessorPil.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if getattr(tokenizer, "image_token", None) is None:  # older tokenizer files name no image token
            tokenizer.image_token = tokenizer.convert_ids_to_tokens(config["image_token_id"])
            tokenizer.image_token_id = config["image_token_id"]
        processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer)
        try:
            model, info = Florence2ForConditionalGeneration.from_pretrained(
                folder, dtype=dtype, attn_implementation="eager", output_loading_info=True
            )
        except (OSError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{folder}: cannot load Florence-2 weights ({type(exc).__name__}: {exc})") from exc
        for problem in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            if info[problem]:
                keys = sorted(str(k) for k in info[problem])
                raise CheckpointError(
                    f"{folder}: weights have {problem.replace('_', ' ')} {keys[0]!r} ({len(keys)} in all)"
                )
        text = model.config.text_config
        # Only the token ids survive from the checkpoint; every decoding choice is in GENERATION_KWARGS.
        model.generation_config = GenerationConfig(
            bos_token_id=text.bos_token_id,
            eos_token_id=text.eos_token_id,
            pad_token_id=text.pad_token_id,
            decoder_start_token_id=text.decoder_start_token_id,
        )
        if max_new_tokens is None:
            max_new_tokens = envvars.get_positive_int(envvars.CAPTION_MAX_NEW_TOKENS)
        return cls(model.to(device).eval(), processor, device, dtype, max_new_tokens)

    def caption_video(self, frames: np.ndarray | Sequence[np.ndarray], prompt: str | None = None) -> str:
        """The caption of a video given as all its decoded uint8 RGB frames [N, H, W, 3]; `prompt`, when
        given, is returned as the caption without running the model."""
        if prompt is not None:
            return prompt
        return self.caption_images([middle_frame(frames)])[0]

    @torch.inference_mode()
    def caption_images(self, images: Sequence[np.ndarray]) -> list[str]:
        """Captions of uint8 RGB images [H, W, 3], all in one generate call (upstream batches 8)."""
        from PIL import Image

        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"images must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
        pil_images = [Image.fromarray(image) for image in images]
        inputs = self.processor(text=[TASK] * len(pil_images), images=pil_images, return_tensors="pt")
        inputs = inputs.to(self.device, self.dtype)  # casts only the floating pixel_values
        generated = self.model.generate(
            input_ids=inputs["input_ids"], pixel_values=inputs["pixel_values"],
            **{**GENERATION_KWARGS, "max_new_tokens": self.max_new_tokens},
        )
        decoded = self.processor.batch_decode(generated, skip_special_tokens=False)
        return [clean_caption(text) for text in decoded]
