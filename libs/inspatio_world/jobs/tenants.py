"""Tenants: who may use the coordinator, which inputs each may read, and each one's limits.

The tenants file (INSPATIO_TENANTS_FILE, JSON) holds no secrets, only the SHA-256 of each token, so
it can live in a ConfigMap:

    {"tenants": [{"name": "acme",
                  "token_sha256": ["<64 lower-case hex>", ...],          # one or more (rotation)
                  "input_prefixes": ["s3://<bucket>/datasets/acme/"],    # optional: readable video_uri prefixes
                  "max_concurrent_jobs": 4,                               # optional limits, whole numbers >= 1
                  "max_upload_bytes": 1073741824,
                  "max_output_frames": 1000,
                  "max_concurrent_sessions": 2}]}                         # else INSPATIO_TENANT_MAX_SESSIONS

It is checked strictly at start-up: unknown keys, a name that is not one plain key part, a digest
that is not 64 lower-case hex digits or is given to two tenants, a prefix not ending in '/' all stop
the coordinator with the file and field named. `inspatio token new` makes a token and its digest.

Without the file the coordinator runs in open mode: one anonymous tenant (ANONYMOUS, name None), no
authentication, the bucket's layout of before tenants (the local stack, which binds 127.0.0.1 only).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import envvars
from ..refusals import PermissionDenied
from ..store.base import InvalidKey
from ..store.keys import TENANTS_PREFIX, uploads_prefix, validate_bucket, validate_key, validate_tenant_name

LIMIT_FIELDS = ("max_concurrent_jobs", "max_upload_bytes", "max_output_frames", "max_concurrent_sessions")
TENANT_FIELDS = frozenset({"name", "token_sha256", "input_prefixes", *LIMIT_FIELDS})
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class TenantsFileError(ValueError):
    """The tenants file is unreadable or invalid; the message names the file and the field."""


@dataclass(frozen=True)
class Tenant:
    """One tenant. `name` None is the anonymous tenant of the open mode. A limit of None: only the
    deployment's own limits apply (for sessions: its default per tenant, jobs/session_quota.py)."""

    name: str | None
    token_sha256: tuple[str, ...] = ()
    input_prefixes: tuple[str, ...] = ()  # s3://<bucket>/<prefix>/ a video_uri may start with
    max_concurrent_jobs: int | None = None
    max_upload_bytes: int | None = None
    max_output_frames: int | None = None
    max_concurrent_sessions: int | None = None  # None: the deployment's INSPATIO_TENANT_MAX_SESSIONS

    @property
    def subject(self) -> str:
        """Who a refusal is about (QuotaExceeded.subject)."""
        return "tenant:" + (self.name or "anonymous")

    def readable_prefixes(self, bucket: str) -> tuple[str, ...]:
        """The s3:// prefixes whose videos this tenant may submit by video_uri."""
        if self.name is None:
            return (f"s3://{bucket}/",)  # open mode: the whole bucket except tenants/ (check_readable)
        return (f"s3://{bucket}/{uploads_prefix(self.name)}", *self.input_prefixes)

    def check_readable(self, bucket: str, key: str) -> None:
        """PermissionDenied unless this tenant may read `key` of `bucket` as its input video. Call it
        before asking the store anything about `key`, so a refusal says nothing about what exists there."""
        validate_key(key)  # no '..' parts: a key under a prefix really is under it
        uri = f"s3://{bucket}/{key}"
        if self.name is None and key.startswith(TENANTS_PREFIX):
            raise PermissionDenied(f"video_uri {uri!r}: keys under {TENANTS_PREFIX} belong to tenants and are not "
                                   "readable without a tenant's token")
        prefixes = self.readable_prefixes(bucket)
        if not any(uri.startswith(prefix) for prefix in prefixes):
            raise PermissionDenied(f"video_uri {uri!r} is outside what this tenant may read: "
                                   + ", ".join(prefixes))


ANONYMOUS = Tenant(None)


@dataclass(frozen=True)
class Tenants:
    """Every tenant of a deployment; none at all is the open mode."""

    tenants: tuple[Tenant, ...] = ()

    @property
    def open(self) -> bool:
        return not self.tenants

    def token_digests(self) -> list[tuple[str, Tenant]]:
        """(token digest, tenant) pairs, for rpc.auth.TokenVerifier."""
        return [(digest, tenant) for tenant in self.tenants for digest in tenant.token_sha256]

    def check_bucket(self, bucket: str) -> None:
        """TenantsFileError unless every input prefix is in `bucket` (the coordinator's store)."""
        for tenant in self.tenants:
            for prefix in tenant.input_prefixes:
                if not prefix.startswith(f"s3://{bucket}/"):
                    raise TenantsFileError(f"tenant {tenant.name!r}: input prefix {prefix!r} is not in this "
                                           f"deployment's bucket {bucket!r} (videos are read from it only)")

    @classmethod
    def from_env(cls) -> "Tenants":
        path = envvars.get(envvars.TENANTS_FILE)
        return cls.from_file(path) if path else cls()

    @classmethod
    def from_file(cls, path: str | Path) -> "Tenants":
        where = f"{envvars.TENANTS_FILE.name} {path}"
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as error:
            raise TenantsFileError(f"{where}: cannot read it ({error.strerror})") from None
        except ValueError as error:  # JSON or UTF-8
            raise TenantsFileError(f"{where}: not valid JSON ({error})") from None
        return cls.from_document(document, where)

    @classmethod
    def from_document(cls, document: Any, where: str = "tenants") -> "Tenants":
        if not isinstance(document, dict) or set(document) != {"tenants"}:
            raise TenantsFileError(f'{where}: expected an object with exactly one key, "tenants"'
                                   + (f", found {sorted(document)}" if isinstance(document, dict) else ""))
        entries = document["tenants"]
        if not isinstance(entries, list) or not entries:
            raise TenantsFileError(f"{where}: tenants must be a non-empty list (leave the variable unset for open mode)")
        tenants = tuple(_tenant(entry, f"{where}: tenants[{i}]") for i, entry in enumerate(entries))
        _check_unique(tenants, where)
        return cls(tenants)


def _tenant(entry: Any, where: str) -> Tenant:
    if not isinstance(entry, dict):
        raise TenantsFileError(f"{where}: expected an object")
    unknown = sorted(set(entry) - TENANT_FIELDS)
    if unknown:
        raise TenantsFileError(f"{where}: unknown key(s) {unknown}; known: {sorted(TENANT_FIELDS)}")
    for required in ("name", "token_sha256"):
        if required not in entry:
            raise TenantsFileError(f"{where}: {required} is missing")
    name = entry["name"]
    try:
        validate_tenant_name(name)
    except InvalidKey as error:
        raise TenantsFileError(f"{where}.name: {error}") from None
    digests = _strings(entry["token_sha256"], f"{where}.token_sha256", non_empty=True)
    for i, digest in enumerate(digests):
        if not _DIGEST.fullmatch(digest):
            raise TenantsFileError(f"{where}.token_sha256[{i}]: expected 64 lower-case hex digits (the sha256 "
                                   "of a token, as `inspatio token new` prints it), never the token itself")
    prefixes = _strings(entry.get("input_prefixes", []), f"{where}.input_prefixes")
    for i, prefix in enumerate(prefixes):
        _check_prefix(prefix, f"{where}.input_prefixes[{i}]")
    limits = {field: _limit(entry.get(field), f"{where}.{field}") for field in LIMIT_FIELDS}
    return Tenant(name, digests, prefixes, **limits)


def _strings(value: Any, where: str, non_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TenantsFileError(f"{where}: expected a list of strings")
    if non_empty and not value:
        raise TenantsFileError(f"{where}: expected at least one")
    return tuple(value)


def _check_prefix(prefix: str, where: str) -> None:
    bucket, _, path = prefix.removeprefix("s3://").partition("/")
    problem = None
    if not prefix.startswith("s3://") or not path or not prefix.endswith("/"):
        problem = "expected s3://<bucket>/<prefix>/ (ending in '/', so 'a/' never admits 'a-other/')"
    else:
        try:
            validate_bucket(bucket)
            validate_key(path[:-1])
        except InvalidKey as error:
            problem = str(error)
        if path.startswith(TENANTS_PREFIX):
            problem = f"{TENANTS_PREFIX} holds the tenants' own uploads and jobs; it cannot be an input prefix"
    if problem:
        raise TenantsFileError(f"{where}: {prefix!r}: {problem}")


def _limit(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TenantsFileError(f"{where}: expected a whole number, at least 1 (or leave it out), got {value!r}")
    return value


def _check_unique(tenants: tuple[Tenant, ...], where: str) -> None:
    names: set[str | None] = set()
    owners: dict[str, str | None] = {}
    for tenant in tenants:
        if tenant.name in names:
            raise TenantsFileError(f"{where}: tenant name {tenant.name!r} appears twice")
        names.add(tenant.name)
        for digest in tenant.token_sha256:
            if digest in owners:
                raise TenantsFileError(f"{where}: tenants {owners[digest]!r} and {tenant.name!r} share a token digest; "
                                       "a token must identify one tenant")
            owners[digest] = tenant.name
