"""The one registry of environment variables the project reads.

Every variable is declared here with its default and meaning; code reads them through `get`,
so `inspatio env` (and the README) can list them all from one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    help: str


ATTENTION = EnvVar(
    "INSPATIO_ATTENTION",
    "auto",
    "Attention kernel for the DiT: auto (flash-attn 3, then 2, then SDPA), sdpa, flash2, flash3.",
)
PARITY_PACK = EnvVar(
    "INSPATIO_PARITY_PACK",
    "",
    "Folder of golden parity fixtures used by the test suite (default: ../shared/parity beside the repo).",
)

WEIGHTS = EnvVar(
    "INSPATIO_WEIGHTS",
    "",
    "Folder with the released weights (upstream's checkpoints/ layout). Unset: tiny random weights.",
)

COMPILE_CACHE = EnvVar(
    "INSPATIO_COMPILE_CACHE",
    "~/.cache/inspatio/torchinductor",
    "Where torch.compile keeps compiled kernels, so a restarted process reaches full speed sooner "
    "(used unless TORCHINDUCTOR_CACHE_DIR is set).",
)

ALL: tuple[EnvVar, ...] = (ATTENTION, PARITY_PACK, WEIGHTS, COMPILE_CACHE)


def get(var: EnvVar) -> str:
    return os.environ.get(var.name, var.default)
