"""One case of a parity pack: `case.json`, input/output tensors, optional weights and model config.

Pack format (see the pack's README): one folder per case with `case.json` (which upstream code it
exercises, arguments, tolerances), `inputs.safetensors`, `outputs.safetensors`, and for model cases
`model_config.json` plus `weights.safetensors` (possibly shared from another case's folder, named in
case.json as `../<case>/weights.safetensors`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ..geometry.trajectory import find_trajectory

CASE_FILE = "case.json"
CUSTOM_TRAJECTORY = "custom_traj.txt"  # the pack README: custom trajectories ship in the case folder


class CaseError(RuntimeError):
    """The case folder is incomplete or malformed."""


@dataclass
class ParityCase:
    path: Path

    @classmethod
    def discover(cls, pack: Path) -> list["ParityCase"]:
        if not pack.is_dir():
            raise CaseError(f"{pack}: parity pack folder not found")
        return [cls(p.parent) for p in sorted(pack.glob(f"*/{CASE_FILE}"))]

    @property
    def name(self) -> str:
        return self.meta.get("case", self.path.name)

    @cached_property
    def meta(self) -> dict:
        return json.loads((self.path / CASE_FILE).read_text())

    @property
    def upstream(self) -> str:
        return self.meta.get("upstream", "")

    @property
    def dtype(self) -> torch.dtype:
        name = self.meta.get("dtype", "float32")
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise CaseError(f"{self.name}: unknown dtype {name!r}")
        return dtype

    @cached_property
    def inputs(self) -> dict[str, torch.Tensor]:
        return self._tensors("inputs.safetensors")

    @cached_property
    def outputs(self) -> dict[str, torch.Tensor]:
        return self._tensors("outputs.safetensors")

    @cached_property
    def model_config(self) -> dict:
        path = self.path / "model_config.json"
        if not path.is_file():
            raise CaseError(f"{self.name}: model_config.json missing")
        return json.loads(path.read_text())

    def file(self, name: str) -> Path:
        path = self.path / name
        if not path.is_file():
            raise CaseError(f"{self.name}: {name} missing")
        return path

    def trajectory_file(self, name: str) -> Path:
        """The file a case's trajectory name stands for: "custom" (or `custom_traj.txt`) is the case
        folder's custom_traj.txt, any other name a shipped traj/ file."""
        if name in ("custom", CUSTOM_TRAJECTORY):
            return self.file(CUSTOM_TRAJECTORY)
        return find_trajectory(name)

    @property
    def weights_path(self) -> Path:
        """This case's weights, or the sibling case's file that case.json points to."""
        own = self.path / "weights.safetensors"
        if own.is_file():
            return own
        text = json.dumps(self.meta)
        for match in re.finditer(r"\.\./([\w.-]+)/weights\.safetensors", text):
            shared = self.path.parent / match.group(1) / "weights.safetensors"
            if shared.is_file():
                return shared
        raise CaseError(f"{self.name}: no weights.safetensors in the case folder and none referenced by case.json")

    def _tensors(self, filename: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.file(filename)))
