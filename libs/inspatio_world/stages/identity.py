"""A cheap, stable identity for a set of weight files, used in every content-addressed key.

Hashing whole checkpoints (tens of GB) at start-up is too slow, so the digest covers each file's
relative path, size, and the first and last 4 MiB of its content: any re-download, conversion or
re-training changes it, while a start-up costs milliseconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

SAMPLE_BYTES = 4 << 20


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    digest: str
    random: bool = False  # tiny random weights: the outputs are meaningless


def _file_fingerprint(path: Path, digest: "hashlib._Hash") -> None:
    size = path.stat().st_size
    digest.update(f"{size}:".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(SAMPLE_BYTES))
        if size > SAMPLE_BYTES:
            handle.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))


def weights_identity(name: str, paths: list[Path], random: bool = False) -> ModelIdentity:
    """Identity of the files (or every file under the folders) in `paths`."""
    digest = hashlib.sha256(name.encode())
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for file in files:
            digest.update(str(file.relative_to(root.parent)).encode())
            _file_fingerprint(file, digest)
    return ModelIdentity(name, digest.hexdigest()[:32], random)
