"""A job's state as one JSON object in the store (`[tenants/<tenant>/]jobs/<id>/manifest.json`), rewritten
atomically after every step, so a restarted or different coordinator can resume the job where it stopped.
A manifest records its tenant (None in open mode, and in manifests written before tenants existed)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Iterator

from ..store.base import ObjectStore
from ..store.keys import TENANTS_PREFIX, is_manifest_key, jobs_prefix, manifest_key
from .options import JobOptions

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)


@dataclass(frozen=True)
class VideoRef:
    key: str
    sha256: str
    size: int = 0
    frames: int = 0  # as admission decoded them (0: not known); stage budgets are counted from it


@dataclass(frozen=True)
class StageRecord:
    seconds: float
    cache_hit: bool
    keys: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    job_id: str
    state: str
    options: JobOptions
    video: VideoRef
    created: float
    updated: float
    caption: str | None = None
    stages: dict[str, StageRecord] = field(default_factory=dict)
    blocks_done: int = 0
    blocks_total: int = 0
    outputs: dict[str, str] = field(default_factory=dict)  # pred/source/render/compare/manifest -> key
    weights: dict[str, str] = field(default_factory=dict)  # stage -> weight digest
    error: str | None = None
    tenant: str | None = None  # whose job it is (None: the open mode); part of its key
    images: tuple[VideoRef, ...] = ()  # an image job's pictures in view order (its `video` is empty)
    geometry: VideoRef | None = None  # an image job's supplied depth/intrinsics/w2c object (None: DA3's)

    @classmethod
    def new(cls, options: JobOptions, video: VideoRef, tenant: str | None = None, images: tuple[VideoRef, ...] = (),
            geometry: VideoRef | None = None) -> "Manifest":  # fmt: skip
        now = time.time()
        return cls(uuid.uuid4().hex[:16], QUEUED, options, video, now, now, tenant=tenant, images=tuple(images), geometry=geometry)

    def with_(self, **changes) -> "Manifest":
        return replace(self, updated=time.time(), **changes)

    def with_stage(self, stage: str, record: StageRecord, **changes) -> "Manifest":
        return self.with_(stages={**self.stages, stage: record}, **changes)

    @property
    def key(self) -> str:
        return manifest_key(self.job_id, self.tenant)

    def to_json(self) -> str:
        document = asdict(self)
        if document["tenant"] is None:
            del document["tenant"]  # open mode writes what it wrote before tenants: older coordinators still read it
        for name in ("images", "geometry"):
            if not document[name]:
                del document[name]  # video jobs write what they wrote before image jobs
        return json.dumps(document, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Manifest":
        raw = json.loads(text)
        raw["options"] = JobOptions.from_dict(raw["options"])
        raw["video"] = VideoRef(**raw["video"])
        raw["images"] = tuple(VideoRef(**image) for image in raw.get("images", ()))
        raw["geometry"] = VideoRef(**raw["geometry"]) if raw.get("geometry") else None
        raw["stages"] = {name: StageRecord(**record) for name, record in raw["stages"].items()}
        return cls(**raw)


def save(store: ObjectStore, manifest: Manifest) -> Manifest:
    store.put_bytes(manifest.key, manifest.to_json().encode(), content_type="application/json")
    return manifest


def load(store: ObjectStore, job_id: str, tenant: str | None = None) -> Manifest:
    return Manifest.from_json(store.get_bytes(manifest_key(job_id, tenant)))


def list_manifests(store: ObjectStore, tenant: str | None = None) -> Iterator[Manifest]:
    """The jobs of one tenant (of the open mode for None)."""
    yield from _manifests_under(store, jobs_prefix(tenant))


def all_manifests(store: ObjectStore) -> Iterator[Manifest]:
    """Every job: the open mode's and every tenant's (resuming unfinished jobs must find them all)."""
    yield from _manifests_under(store, jobs_prefix(None))
    yield from _manifests_under(store, TENANTS_PREFIX)


def _manifests_under(store: ObjectStore, prefix: str) -> Iterator[Manifest]:
    for info in store.list(prefix):
        if is_manifest_key(info.key):
            yield Manifest.from_json(store.get_bytes(info.key))
