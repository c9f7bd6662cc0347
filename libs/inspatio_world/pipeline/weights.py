"""Where the released weights live, checked before any model is built.

One folder (`checkpoints/` upstream) holds everything, laid out as upstream's download script does:

    InSpatio-World-1.3B/InSpatio-World-1.3B.safetensors
    InSpatio-World-1.3B/InSpatio-World-1.5-1.3B.safetensors   (model_version v1_5; upstream v1.5's download.sh)
    Wan2.1-T2V-1.3B/{config.json, diffusion_pytorch_model*.safetensors, Wan2.1_VAE.pth,
                     models_t5_umt5-xxl-enc-bf16.pth (or .safetensors), google/umt5-xxl/}
    taehv/taew2_1.pth                      (only for the TAEHV decoder)
    DA3/, Florence-2-large/                (conditioning stages)

A folder written by `write_tiny_weights` has the same layout plus `inspatio_profile.json`, which
gives the small architectures and marks the weights as random.

Four entries may live elsewhere (upstream's --checkpoint_path, --da3_model_path,
--florence_model_path, --tae_checkpoint_path): an override path replaces the layout's path
everywhere, in the checks, the loaders and the model identities. Services read them from
INSPATIO_DIT_CHECKPOINT, INSPATIO_DA3_DIR, INSPATIO_FLORENCE_DIR and INSPATIO_TAEHV_CHECKPOINT
(`WeightsFolder.from_env`); the Wan2.1 folder and the tiny profile always come from the root.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .. import envvars
from ..models.checkpoints import CheckpointError

PROFILE_FILE = "inspatio_profile.json"
DIT_FILES = {"v1": "InSpatio-World-1.3B.safetensors", "v1_5": "InSpatio-World-1.5-1.3B.safetensors"}  # by model version
WAN_DIR = "Wan2.1-T2V-1.3B"
T5_NAMES = ("models_t5_umt5-xxl-enc-bf16.pth", "models_t5_umt5-xxl-enc-bf16.safetensors")

# override field -> (its environment variable, whether it names a folder)
OVERRIDES = {
    "dit_checkpoint": (envvars.DIT_CHECKPOINT, False),
    "da3": (envvars.DA3_DIR, True),
    "florence": (envvars.FLORENCE_DIR, True),
    "taehv_checkpoint": (envvars.TAEHV_CHECKPOINT, False),
}


@dataclass(frozen=True)
class WeightsFolder:
    """The checkpoints folder of all stages; each stage checks only the files it loads.

    The optional fields replace one path of the layout each (None: the layout's path)."""

    root: Path
    dit_checkpoint: Path | None = None  # the InSpatio-World .safetensors file
    da3: Path | None = None  # the Depth-Anything-3 folder
    florence: Path | None = None  # the Florence-2-large folder
    taehv_checkpoint: Path | None = None  # the TAEHV checkpoint
    model_version: str = "v1"  # which release's DiT file `dit_file` is (DIT_FILES)

    def __post_init__(self) -> None:
        if self.model_version not in DIT_FILES:
            raise ValueError(f"model_version {self.model_version!r}: choose from {tuple(DIT_FILES)}")
        object.__setattr__(self, "root", Path(self.root))
        for name in OVERRIDES:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value))

    @classmethod
    def from_env(cls, root: str | Path, model_version: str = "v1") -> "WeightsFolder":
        """The folder `root` with the overrides set in the environment (unset or empty: the layout's path)."""
        values = {name: Path(envvars.get(var)).expanduser() for name, (var, _) in OVERRIDES.items() if envvars.get(var)}
        return cls(Path(root), **values, model_version=model_version)

    def for_version(self, model_version: str) -> "WeightsFolder":
        """The same folder, its DiT file that of `model_version` (an INSPATIO_DIT_CHECKPOINT override stays)."""
        return replace(self, model_version=model_version)

    @property
    def dit_file(self) -> Path:
        return self.dit_checkpoint or self.root / "InSpatio-World-1.3B" / DIT_FILES[self.model_version]

    @property
    def strict_dit(self) -> bool:
        """v1.5's checkpoint is loaded strictly, every key from the file (upstream load_state_dict(strict=True));
        v1's may be completed from the Wan base folder, as upstream v1 reads the base first."""
        return self.model_version == "v1_5"

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
        return self.taehv_checkpoint or self.root / "taehv" / "taew2_1.pth"

    @property
    def da3_dir(self) -> Path:
        return self.da3 or self.root / "DA3"

    @property
    def florence_dir(self) -> Path:
        return self.florence or self.root / "Florence-2-large"

    @property
    def profile(self) -> dict:
        """Architecture overrides and the `random` flag of generated weights; {} for released ones."""
        path = self.root / PROFILE_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    @property
    def is_random(self) -> bool:
        return bool(self.profile.get("random", False))

    def check(self, decoder: str) -> None:
        """The generator's files (with `decoder`'s): fail fast, naming the first missing file, before
        gigabytes are read."""
        self._check_override("dit_checkpoint")
        if decoder == "taehv":
            self._check_override("taehv_checkpoint")
        if not self.root.is_dir():
            raise CheckpointError(f"{self.root}: weights folder not found")
        needed = [self.dit_file, self.dit_config_file, self.vae_file, self.text_encoder_file, self.tokenizer_dir]
        if decoder == "taehv":
            needed.append(self.taehv_file)
        for path in needed:
            self.require(path)

    def check_caption(self) -> None:
        """Florence-2's folder."""
        self._check_override("florence")
        self.require(self.florence_dir / "config.json")

    def check_depth(self) -> None:
        """Depth-Anything-3's folder."""
        self._check_override("da3")
        self.require(self.da3_dir / "model.safetensors")

    def require(self, path: Path) -> None:
        """A needed file: its absence names where the path came from (the folder, or a variable)."""
        if path.exists():
            return
        for name, (var, _) in OVERRIDES.items():
            override = getattr(self, name)
            if override is not None and (path == override or override in path.parents):
                raise CheckpointError(f"{path}: required weight file not found (in {var.name}={override})")
        raise CheckpointError(f"{path}: required weight file not found (weights folder {self.root})")

    def _check_override(self, name: str) -> None:
        path = getattr(self, name)
        var, is_folder = OVERRIDES[name]
        if path is None:
            return
        kind = "folder" if is_folder else "file"
        if not path.exists():
            raise CheckpointError(f"{var.name}={path}: {kind} not found")
        if path.is_dir() != is_folder:
            raise CheckpointError(f"{var.name}={path}: not a {kind}")


def override_env(dit_checkpoint: str | Path | None = None, da3_dir: str | Path | None = None,
                 florence_dir: str | Path | None = None, taehv_checkpoint: str | Path | None = None) -> dict[str, str]:  # fmt: skip
    """The environment variables that give the services these per-model paths (the ones not None),
    as absolute paths, e.g. for `LocalStack(extra_env=...)`; {} when none is given."""
    given = {envvars.DIT_CHECKPOINT: dit_checkpoint, envvars.DA3_DIR: da3_dir, envvars.FLORENCE_DIR: florence_dir,
             envvars.TAEHV_CHECKPOINT: taehv_checkpoint}  # fmt: skip
    return {var.name: os.path.abspath(os.path.expanduser(value)) for var, value in given.items() if value is not None}


def profile_json(**configs) -> str:
    """The profile file's text for dataclass configs given by name (dit=..., vae=...)."""
    return json.dumps({"random": True, **{name: asdict(cfg) for name, cfg in configs.items()}}, indent=2)
