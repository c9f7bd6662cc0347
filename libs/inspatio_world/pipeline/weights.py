"""Where the released weights live, checked before any model is built.

One folder (`checkpoints/` upstream) holds everything, laid out as upstream's download script does:

    InSpatio-World-1.3B/InSpatio-World-1.3B.safetensors
    Wan2.1-T2V-1.3B/{config.json, diffusion_pytorch_model*.safetensors, Wan2.1_VAE.pth,
                     models_t5_umt5-xxl-enc-bf16.pth (or .safetensors), google/umt5-xxl/}
    taehv/taew2_1.pth                      (only for the TAEHV decoder)
    DA3/, Florence-2-large/                (conditioning stages)

A folder written by `write_tiny_weights` has the same layout plus `inspatio_profile.json`, which
gives the small architectures and marks the weights as random.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..models.checkpoints import CheckpointError

PROFILE_FILE = "inspatio_profile.json"
WAN_DIR = "Wan2.1-T2V-1.3B"
T5_NAMES = ("models_t5_umt5-xxl-enc-bf16.pth", "models_t5_umt5-xxl-enc-bf16.safetensors")


@dataclass(frozen=True)
class WeightsFolder:
    """The checkpoints folder of all stages; each stage checks only the files it loads."""

    root: Path

    @property
    def dit_file(self) -> Path:
        return self.root / "InSpatio-World-1.3B" / "InSpatio-World-1.3B.safetensors"

    @property
    def wan_dir(self) -> Path:
        return self.root / WAN_DIR

    @property
    def dit_config_file(self) -> Path:
        return self.wan_dir / "config.json"

    @property
    def vae_file(self) -> Path:
        return self.wan_dir / "Wan2.1_VAE.pth"

    @property
    def text_encoder_file(self) -> Path:
        found = [self.wan_dir / name for name in T5_NAMES if (self.wan_dir / name).is_file()]
        return found[0] if found else self.wan_dir / T5_NAMES[0]

    @property
    def tokenizer_dir(self) -> Path:
        return self.wan_dir / "google" / "umt5-xxl"

    @property
    def taehv_file(self) -> Path:
        return self.root / "taehv" / "taew2_1.pth"

    @property
    def da3_dir(self) -> Path:
        return self.root / "DA3"

    @property
    def florence_dir(self) -> Path:
        return self.root / "Florence-2-large"

    @property
    def profile(self) -> dict:
        """Architecture overrides and the `random` flag of generated weights; {} for released ones."""
        path = self.root / PROFILE_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def is_random(self) -> bool:
        return bool(self.profile.get("random", False))

    def check(self, decoder: str) -> None:
        """Fail fast, naming the first missing file, before gigabytes are read."""
        if not self.root.is_dir():
            raise CheckpointError(f"{self.root}: weights folder not found")
        needed = [self.dit_file, self.dit_config_file, self.vae_file, self.text_encoder_file, self.tokenizer_dir]
        if decoder == "taehv":
            needed.append(self.taehv_file)
        for path in needed:
            if not path.exists():
                raise CheckpointError(f"{path}: required weight file not found (weights folder {self.root})")


def profile_json(**configs) -> str:
    """The profile file's text for dataclass configs given by name (dit=..., vae=...)."""
    return json.dumps({"random": True, **{name: asdict(cfg) for name, cfg in configs.items()}}, indent=2)
