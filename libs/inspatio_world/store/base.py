"""The object store interface every backend implements, its errors, and helpers they share.

Contract (checked by tests/integration/test_store.py against every backend):
- Every put records the content's sha256 in the object's user metadata and returns it in ObjectInfo.
- Puts are atomic: a reader sees the old object or the whole new one, never a part; a put that fails
  or is interrupted (even by the chunk iterator raising) leaves nothing behind.
- Reads of a missing key raise ObjectNotFound; `stat` returns None instead. `delete` of a missing key
  is a no-op (as on S3).
- `get_bytes` and `download` check the content against the recorded sha256 (when there is one).
- `list` yields key, size and etag only: S3 listings carry no user metadata, and a caller that needs
  sha256 or metadata must `stat` on every backend, not just on the one it was tested with.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

DEFAULT_CONTENT_TYPE = "application/octet-stream"
SHA256_METADATA = "sha256"  # user-metadata name under which every put records the content digest
CHUNK_SIZE = 1 << 20

# S3 sends user metadata as HTTP headers: lower-case names (S3 lower-cases them anyway), no "_"
# (proxies such as nginx drop such headers), printable ASCII values, 2 KiB in all.
_METADATA_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_METADATA_VALUE = re.compile(r"^[\x20-\x7e]*$")
MAX_METADATA_BYTES = 2048


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object. From `list`, sha256 and content_type are None and
    metadata is empty (see the module docstring); `stat` and the puts fill them in."""

    key: str
    size: int
    sha256: str | None
    content_type: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)  # user metadata, names lower-case, without sha256
    etag: str | None = None


class StoreError(RuntimeError):
    """The store could not do what was asked; the message says why and what to check."""


class ObjectNotFound(StoreError, KeyError):
    """No object under this key. A KeyError too, so `except KeyError` callers keep working."""

    def __init__(self, message: str, bucket: str = "", key: str = "") -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key

    @classmethod
    def for_key(cls, bucket: str, key: str) -> ObjectNotFound:
        return cls(f"object {key!r} not found in bucket {bucket!r}", bucket, key)

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class InvalidKey(ValueError, StoreError):
    """A key, prefix, bucket name, job id, upload name or metadata entry the stores refuse: a caller's
    mistake, so a ValueError first (INVALID_ARGUMENT over gRPC, never retried), and a StoreError for
    `except StoreError` callers. `field`: the request field that held the value, where the caller
    knows (refusals.field_of)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class CredentialsRejected(StoreError):
    """The server refused the access key / secret key (or they lack permission)."""


class ObjectStore(ABC):
    """A bucket of immutable-per-put objects addressed by `/`-separated keys."""

    bucket: str

    @abstractmethod
    def url_for(self, key: str) -> str:
        """Where the object lives, for people and logs: s3://bucket/key or file:///..."""

    @abstractmethod
    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str = DEFAULT_CONTENT_TYPE,
                   metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        """Store content of unknown length (e.g. an upload arriving over gRPC), hashing it on the way."""

    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE,
                  metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        return self.put_stream(key, [bytes(data)], content_type, metadata)

    def put_file(self, key: str, path: Path | str, content_type: str = DEFAULT_CONTENT_TYPE,
                 metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        with open(path, "rb") as source:
            return self.put_stream(key, iter(lambda: source.read(CHUNK_SIZE), b""), content_type, metadata)

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The whole object; ObjectNotFound if missing."""

    @abstractmethod
    def download(self, key: str, path: Path | str) -> Path:
        """Write the object to `path` atomically (a temp file beside it, then rename); returns `path`."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object's info, or None if there is no such object."""

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; nothing happens if it does not exist."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix` (a plain string prefix, as on S3), in key order."""

    @abstractmethod
    def presigned_get(self, key: str, expires_s: int = 3600) -> str:
        """A URL that reads the object without credentials."""

    @abstractmethod
    def presigned_put(self, key: str, expires_s: int = 3600) -> str:
        """A URL that uploads the object with a plain HTTP PUT without credentials."""


def clean_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """User metadata as the stores keep it: lower-case names, checked to survive a trip through S3."""
    cleaned = {str(name).lower(): value for name, value in (metadata or {}).items()}
    for name, value in cleaned.items():
        if name == SHA256_METADATA:
            raise InvalidKey(f"metadata name {name!r} is reserved: the store records the content digest there")
        if not _METADATA_NAME.fullmatch(name):
            raise InvalidKey(f"metadata name {name!r}: use letters, digits and '-'")
        if not isinstance(value, str) or not _METADATA_VALUE.fullmatch(value):
            raise InvalidKey(f"metadata {name!r}: the value must be a printable ASCII string, got {value!r}")
    if sum(len(name) + len(value) for name, value in cleaned.items()) > MAX_METADATA_BYTES:
        raise InvalidKey(f"metadata larger than {MAX_METADATA_BYTES} bytes")
    return cleaned


def check_digest(bucket: str, key: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise StoreError(f"object {key!r} in bucket {bucket!r} is corrupt: its content has sha256 {actual}, "
                         f"but {expected} was recorded when it was stored")


def write_atomically(path: Path | str, chunks: Iterable[bytes],
                     check: Callable[[str], None] | None = None) -> tuple[Path, str]:
    """Write chunks to a temp file beside `path` and rename it into place, so `path` is either
    untouched or complete. `check(sha256)` may raise to reject the content before it is published.
    Returns the path and the content's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
        if check is not None:
            check(digest.hexdigest())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path, digest.hexdigest()
