"""Where things live in the bucket, and the key rules every store enforces.

Layout:
    uploads/<sha256>/<filename>      a user's video, under the sha256 of its bytes
    cache/<stage>/<digest>/<name>    a stage output, content-addressed (recipe below)
    jobs/<job_id>/manifest.json      a job's state (other per-job objects share the jobs/<job_id>/ prefix)

With tenants (jobs/tenants.py), a tenant's uploads and jobs live under tenants/<tenant>/ (its
`tenant_root`): tenants/<tenant>/uploads/... and tenants/<tenant>/jobs/<job_id>/...; the open mode
(no tenants file) keeps the layout above. The content-addressed cache/ is shared by everyone: its keys
are hashes of the work, so a hit reveals nothing about whose work it was.

Content address of a stage's work (`work_digest`):
    sha256 of the UTF-8 bytes of
        json.dumps({"inputs": inputs, "options": options, "weights": weights},
                   sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    in lower-case hex. Sorted keys and no whitespace make the text depend only on the values, so the
    same work always maps to the same key, and a changed input digest, option value or weight identity
    to another one. Values are hashed as their JSON text: 1 and 1.0 give different keys, a tuple and a
    list with the same items the same key; callers normalise option values before hashing.

Key rules (S3 allows nearly anything; these keep keys portable to a local directory and URLs):
non-empty, at most 1024 UTF-8 bytes, `/`-separated parts that are neither empty, `.` nor `..` and at
most 255 UTF-8 bytes each (a file name on most file systems), no leading `/`, no control characters
or backslashes, and no part starting with `.inspatio-` (reserved for the local store's temporary
names). Job ids and stage names are one plain part of at most 128 characters. An upload's file
name is reduced to its last part (`dir/clip.mp4` -> `clip.mp4`; a backslash separates too) and must
then be a valid part. Every refusal is an InvalidKey, a ValueError: the caller's mistake
(INVALID_ARGUMENT over gRPC).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Mapping

from .base import InvalidKey

MAX_KEY_BYTES = 1024
MAX_PART_BYTES = 255  # one `/`-separated part: a file or folder name in the local store
MAX_NAME_CHARS = 128  # a job id or a stage name
RESERVED_PREFIX = ".inspatio-"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # stage names and job ids: one plain part
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
UPLOAD_FIELD = "upload_name"  # the JobSpec field an upload's name comes in (its refusals name it)


def validate_key(key: str, field: str = "") -> str:
    """`key` if every store accepts it, else InvalidKey saying what is wrong (naming request `field`, if given)."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"object key must be a non-empty string, got {_shown(key)}", field)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key longer than {MAX_KEY_BYTES} bytes: {_shown(key)}", field)
    if _CONTROL.search(key):
        raise InvalidKey(f"object key {_shown(key)} contains a control character or backslash", field)
    if key.startswith("/"):
        raise InvalidKey(f"object key {_shown(key)} must be relative (no leading '/')", field)
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(f"object key {_shown(key)} has an empty, '.' or '..' part", field)
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise InvalidKey(f"object key {_shown(key)} has a part longer than {MAX_PART_BYTES} bytes", field)
        if part.startswith(RESERVED_PREFIX):
            raise InvalidKey(f"object key {_shown(key)}: parts starting with {RESERVED_PREFIX!r} are reserved", field)
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key possibly ending in '/' (e.g. 'jobs/')."""
    if prefix:
        validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def validate_bucket(bucket: str) -> str:
    """S3 bucket naming: 3-63 lower-case letters, digits, '.' and '-', starting and ending alphanumeric."""
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidKey(f"bucket name {bucket!r}: use 3-63 lower-case letters, digits, '.' and '-', "
                         "starting and ending with a letter or digit")
    return bucket


def work_digest(inputs: Mapping[str, str], options: Mapping[str, object], weights: str) -> str:
    """The content address of a stage's work (recipe in the module docstring)."""
    for name, value in inputs.items():
        if not isinstance(value, str):
            raise InvalidKey(f"input {name!r} must be a digest or key string, got {type(value).__name__}")
    document = {"inputs": dict(inputs), "options": dict(options), "weights": weights}
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as error:  # a Path, an array, NaN...: no stable text form
        raise InvalidKey(f"stage options must be plain JSON values (no NaN/inf): {error}") from error
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_key(stage: str, inputs: Mapping[str, str], options: Mapping[str, object], weights: str,
                name: str) -> str:
    """cache/<stage>/<work_digest>/<name>: the key of output `name` of `stage` for this work."""
    _check_name_part("stage", stage)
    return validate_key(f"cache/{stage}/{work_digest(inputs, options, weights)}/{name}")


TENANTS_PREFIX = "tenants/"


def validate_tenant_name(name: str) -> str:
    """`name` if it can name a tenant (one plain key part, like a job id), else InvalidKey."""
    _check_name_part("tenant name", name)
    return name


def tenant_root(tenant: str | None) -> str:
    """Where a tenant's uploads and jobs live: tenants/<tenant>/, or the bucket's root in open mode (None)."""
    return "" if tenant is None else f"{TENANTS_PREFIX}{validate_tenant_name(tenant)}/"


def uploads_prefix(tenant: str | None = None) -> str:
    return f"{tenant_root(tenant)}uploads/"


def upload_key(sha256: str, filename: str, tenant: str | None = None) -> str:
    """[tenants/<tenant>/]uploads/<sha256>/<filename>: a user's file under its content hash (directories dropped)."""
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise InvalidKey(f"upload digest must be 64 lower-case hex digits, got {_shown(sha256)}")
    return validate_key(f"{uploads_prefix(tenant)}{sha256}/{upload_filename(filename)}")


def upload_filename(filename: str) -> str:
    """The name an upload is stored under: the last part of `filename` (folders dropped, '\\' is a
    separator too), or InvalidKey, naming `upload_name`, when no safe name is left: empty, '.' or
    '..', control characters, longer than MAX_PART_BYTES, or the reserved prefix."""
    if not isinstance(filename, str):
        raise InvalidKey(f"upload_name must be a string, got {type(filename).__name__}", UPLOAD_FIELD)
    if _CONTROL_CHARACTER.search(filename):
        raise InvalidKey(f"upload_name {_shown(filename)} contains a control character", UPLOAD_FIELD)
    basename = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if basename in ("", ".", ".."):
        raise InvalidKey(f"upload_name {_shown(filename)} names no file: give the video's file name, "
                         "e.g. 'clip.mp4'", UPLOAD_FIELD)
    if len(basename.encode("utf-8")) > MAX_PART_BYTES:
        raise InvalidKey(f"upload_name {_shown(basename)} is longer than {MAX_PART_BYTES} bytes (UTF-8)", UPLOAD_FIELD)
    if basename.startswith(RESERVED_PREFIX):
        raise InvalidKey(f"upload_name {_shown(basename)}: names starting with {RESERVED_PREFIX!r} are reserved", UPLOAD_FIELD)
    return basename


def validate_job_id(job_id: str, field: str = "") -> str:
    """`job_id` if it can name a job (one plain key part, at most MAX_NAME_CHARS), else InvalidKey
    (naming request `field`, if given)."""
    _check_name_part("job id", job_id, field)
    return job_id


def jobs_prefix(tenant: str | None = None) -> str:
    """[tenants/<tenant>/]jobs/: the prefix of every job of one tenant (of the open mode for None)."""
    return f"{tenant_root(tenant)}jobs/"


def job_prefix(job_id: str, tenant: str | None = None) -> str:
    """[tenants/<tenant>/]jobs/<job_id>/: the prefix under which everything about one job lives."""
    return f"{jobs_prefix(tenant)}{validate_job_id(job_id)}/"


def manifest_key(job_id: str, tenant: str | None = None) -> str:
    return f"{job_prefix(job_id, tenant)}manifest.json"


_MANIFEST_KEY = re.compile(r"^(?:tenants/[^/]+/)?jobs/[^/]+/manifest\.json$")


def is_manifest_key(key: str) -> bool:
    """Whether `key` is a job manifest's key, of any tenant or of the open mode."""
    return bool(_MANIFEST_KEY.fullmatch(key))


def _check_name_part(what: str, value: str, field: str = "") -> None:
    if not isinstance(value, str):
        raise InvalidKey(f"{what} must be a string, got {type(value).__name__}", field)
    if not value:
        raise InvalidKey(f"{what} is empty", field)
    if len(value) > MAX_NAME_CHARS or not _NAME_PART.fullmatch(value):
        raise InvalidKey(f"{what} {_shown(value)} is not valid: use at most {MAX_NAME_CHARS} letters, digits, "
                         "'_', '.' and '-', starting with a letter or digit", field)


def _shown(value: object, limit: int = 80) -> str:
    """`value` quoted for a message, cut to its first `limit` characters (with the full length)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    return repr(value)
