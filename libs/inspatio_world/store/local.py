"""The embedded default store: a bucket is a directory, an object a file under its key.

Layout under `root`:
    <bucket>/<key>                       a symlink naming the object's current version
    .versions/<bucket>/<id>.data         that version's bytes, never modified once written
    .versions/<bucket>/<id>.json         its info (size, sha256, content type, user metadata)

WHY versions and a symlink: a put must publish the bytes and their metadata together. Both are
written to a fresh version first (invisible to readers), then one os.replace() of the symlink
publishes them at once. Readers resolve the link once and read both files of that version, so they
never pair new bytes with old metadata. A put that fails removes its version files; a process killed
mid-put (or two puts racing on one key) can leave an unreferenced version file behind, never a
visible partial object. Keys are files here, so one store cannot hold both `a` and `a/b` (S3 can).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Mapping

from .base import (CHUNK_SIZE, DEFAULT_CONTENT_TYPE, ObjectInfo, ObjectNotFound, ObjectStore, StoreError,
                   check_digest, clean_metadata, write_atomically)
from .keys import RESERVED_PREFIX, validate_bucket, validate_key, validate_prefix

_TEMP_LINK = f"{RESERVED_PREFIX}tmp-"
_RESOLVE_ATTEMPTS = 5  # a concurrent overwrite can remove the version just resolved; look again


class LocalStore(ObjectStore):
    def __init__(self, root: Path | str, bucket: str = "inspatio") -> None:
        self.root = Path(root).expanduser().resolve()
        self.bucket = validate_bucket(bucket)
        self._objects = self.root / self.bucket
        self._versions = self.root / ".versions" / self.bucket  # bucket names never start with "."

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r}, bucket={self.bucket!r})"

    def url_for(self, key: str) -> str:
        return self._link(validate_key(key)).as_uri()

    # -- writes -------------------------------------------------------------------------------

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str = DEFAULT_CONTENT_TYPE,
                   metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        validate_key(key)
        metadata = clean_metadata(metadata)
        version = uuid.uuid4().hex
        data, info_file = self._version_files(version)
        self._versions.mkdir(parents=True, exist_ok=True)
        try:
            size, sha256 = _write_durably(data, chunks)
            info = ObjectInfo(key, size, sha256, content_type, metadata, etag=version)
            _write_durably(info_file, [json.dumps(_info_record(info)).encode()])
            self._publish(key, data)
        except BaseException:
            _remove_version_files(data, info_file)
            raise
        return info

    def delete(self, key: str) -> None:
        link = self._link(validate_key(key))
        version = self._resolve(link)
        if version is None:
            return
        link.unlink(missing_ok=True)
        _remove_version_files(*self._version_files(version))
        self._prune_empty_folders(link.parent)

    def _publish(self, key: str, data: Path) -> None:
        """Point the key's symlink at `data` in one rename; then drop the version it replaced."""
        link = self._link(key)
        replaced = self._resolve(link)
        for _ in range(_RESOLVE_ATTEMPTS):  # a concurrent delete may prune the folder we just made
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                temp = link.parent / f"{_TEMP_LINK}{data.stem}"
                os.symlink(os.path.relpath(data, link.parent), temp)
                break
            except FileNotFoundError:
                continue
            except (FileExistsError, NotADirectoryError) as error:
                raise StoreError(f"cannot store {key!r}: a parent of it is an object in bucket {self.bucket!r} "
                                 "(a local store cannot hold both 'a' and 'a/b')") from error
        else:
            raise StoreError(f"cannot create the folder for {key!r} in {self._objects}")
        try:
            os.replace(temp, link)
        except IsADirectoryError as error:
            temp.unlink()
            raise StoreError(f"cannot store {key!r}: other objects live under {key + '/'!r} in bucket "
                             f"{self.bucket!r} (a local store cannot hold both 'a' and 'a/b')") from error
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if replaced is not None and replaced != data.stem:
            _remove_version_files(*self._version_files(replaced))

    def _prune_empty_folders(self, folder: Path) -> None:
        """Remove folders emptied by a delete, as S3 has no folders to leave behind."""
        while folder != self._objects:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone): stop
                return
            folder = folder.parent

    # -- reads --------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            handle, info = self._open(key)
        except ObjectNotFound:
            return None
        handle.close()
        return info

    def get_bytes(self, key: str) -> bytes:
        handle, info = self._open(key)
        with handle:
            data = handle.read()
        check_digest(self.bucket, key, info.sha256, hashlib.sha256(data).hexdigest())
        return data

    def download(self, key: str, path: Path | str) -> Path:
        handle, info = self._open(key)
        with handle:
            chunks = iter(lambda: handle.read(CHUNK_SIZE), b"")
            written, _ = write_atomically(path, chunks, lambda sha: check_digest(self.bucket, key, info.sha256, sha))
        return written

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for key in sorted(self._keys_under(prefix)):
            version = self._resolve(self._link(key))
            size = self._data_size(version)
            if size is not None:  # else deleted or overwritten since the walk
                yield ObjectInfo(key, size, None, None, {}, etag=version)

    def presigned_get(self, key: str, expires_s: int = 3600) -> str:
        """A file:// URL of the object (anyone who can read the folder can read it; no expiry)."""
        return self.url_for(key)

    def presigned_put(self, key: str, expires_s: int = 3600) -> str:
        raise StoreError("a local store cannot hand out upload URLs (writing to the file directly would "
                         "bypass the atomic put and its sha256); upload with put_file or put_stream")

    def _open(self, key: str) -> tuple[BinaryIO, ObjectInfo]:
        """The object's data file, opened, and the info of that same version."""
        link = self._link(validate_key(key))
        for _ in range(_RESOLVE_ATTEMPTS):
            version = self._resolve(link)
            if version is None:
                raise ObjectNotFound.for_key(self.bucket, key)
            data, info_file = self._version_files(version)
            try:
                handle = data.open("rb")
            except FileNotFoundError:
                continue
            try:
                record = json.loads(info_file.read_text())
            except FileNotFoundError:
                handle.close()
                continue
            return handle, ObjectInfo(key, record["size"], record["sha256"], record["content_type"],
                                      record["metadata"], etag=version)
        raise StoreError(f"object {key!r} in bucket {self.bucket!r} kept changing while being read")

    def _keys_under(self, prefix: str) -> Iterator[str]:
        start = self._objects / prefix.rpartition("/")[0]  # the deepest folder that holds every match
        for folder, _, names in os.walk(start):
            for name in names:
                path = Path(folder, name)
                if not name.startswith(_TEMP_LINK) and path.is_symlink():
                    key = path.relative_to(self._objects).as_posix()
                    if key.startswith(prefix):
                        yield key

    # -- paths --------------------------------------------------------------------------------

    def _link(self, key: str) -> Path:
        return self._objects / key

    def _version_files(self, version: str) -> tuple[Path, Path]:
        return self._versions / f"{version}.data", self._versions / f"{version}.json"

    def _data_size(self, version: str | None) -> int | None:
        try:
            return self._version_files(version)[0].stat().st_size if version else None
        except FileNotFoundError:
            return None

    @staticmethod
    def _resolve(link: Path) -> str | None:
        """The version a key's symlink names, or None when there is no object under the key."""
        try:
            return Path(os.readlink(link)).stem
        except OSError:  # missing, or a folder (a prefix of other keys) rather than an object
            return None


def _info_record(info: ObjectInfo) -> dict[str, object]:
    return {"size": info.size, "sha256": info.sha256, "content_type": info.content_type,
            "metadata": dict(info.metadata)}


def _write_durably(path: Path, chunks: Iterable[bytes]) -> tuple[int, str]:
    """Write a new file and fsync it, so a published link never points at data lost in a crash."""
    digest, size = hashlib.sha256(), 0
    with path.open("xb") as out:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def _remove_version_files(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
