"""Moving stage artifacts between the object store and local files.

Stages work on local temporary files (decoders and encoders want paths) and publish results with
one atomic put per object, so a reader never sees half an artifact.
"""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..store.base import ObjectInfo, ObjectNotFound, ObjectStore

JSON = "application/json"
MKV = "video/x-matroska"
MP4 = "video/mp4"
SAFETENSORS = "application/octet-stream"


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="inspatio-") as folder:
        yield Path(folder)


def fetch(store: ObjectStore, key: str, folder: Path, name: str | None = None) -> Path:
    return store.download(key, folder / (name or Path(key).name))


def put_json(store: ObjectStore, key: str, value: object) -> ObjectInfo:
    return store.put_bytes(key, json.dumps(value, indent=2, sort_keys=True).encode(), content_type=JSON)


def get_json(store: ObjectStore, key: str) -> object:
    return json.loads(store.get_bytes(key))


def object_digest(store: ObjectStore, key: str) -> str:
    """The content identity of an input object: its sha256, or (for objects written by other S3
    clients, which carry no sha256) its ETag and size. Raises ObjectNotFound."""
    info = store.stat(key)
    if info is None:
        raise ObjectNotFound.for_key(store.bucket, key)
    return info.sha256 or f"etag:{info.etag}:{info.size}"


def all_exist(store: ObjectStore, keys: list[str]) -> list[ObjectInfo] | None:
    """The objects' infos if every one exists (a complete cached result), else None."""
    infos = [store.stat(key) for key in keys]
    return infos if all(info is not None for info in infos) else None


@dataclass(frozen=True)
class Timing:
    stage: str
    seconds: float
    cache_hit: bool


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def timing(self, stage: str, cache_hit: bool) -> Timing:
        return Timing(stage, time.perf_counter() - self.start, cache_hit)
