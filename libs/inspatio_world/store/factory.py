"""A store from a URL, so every entry point configures storage the same way.

    /abs/path  or  file:///abs/path[?bucket=name]            LocalStore (bucket "inspatio" by default)
    s3://bucket?endpoint=host:port[&secure=0|1][&region=r][&part_size_mb=64]   S3Store

S3 credentials never go in the URL (URLs end up in logs); they come from the environment:
INSPATIO_S3_ACCESS_KEY / INSPATIO_S3_SECRET_KEY, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
Without `endpoint`, AWS (s3.amazonaws.com) is used; `secure` defaults to 1 (HTTPS).
INSPATIO_STORE_RETRY_SECONDS (default 60) bounds how long a transient S3 failure is retried in place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from .. import envvars
from .base import ObjectStore, StoreError
from .local import LocalStore
from .s3 import MIB, S3Store

# (access key, secret key) variable pairs, first complete pair wins; halves of two pairs never mix.
CREDENTIAL_VARS = ((envvars.S3_ACCESS_KEY.name, envvars.S3_SECRET_KEY.name), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
AWS_ENDPOINT = "s3.amazonaws.com"


def open_store(url: str, env: Mapping[str, str] | None = None) -> ObjectStore:
    """The store `url` names (see the module docstring); `env` defaults to os.environ."""
    env = os.environ if env is None else env
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        return _local_store(url, parts)
    if parts.scheme == "s3":
        return _s3_store(url, parts, env)
    raise StoreError(f"store URL {url!r}: use a path, file:///path or s3://bucket?endpoint=host:port")


def _local_store(url: str, parts: SplitResult) -> LocalStore:
    if parts.scheme == "":
        return LocalStore(Path(url))
    if parts.netloc not in ("", "localhost"):
        raise StoreError(f"store URL {url!r}: a file URL names a local path, file:///abs/path")
    options = _options(url, parts.query, allowed={"bucket"})
    return LocalStore(Path(unquote(parts.path)), **options)


def _s3_store(url: str, parts: SplitResult, env: Mapping[str, str]) -> S3Store:
    if "@" in parts.netloc:
        raise StoreError(f"store URL s3://...@{parts.netloc.rpartition('@')[2]}: credentials go in the environment "
                         f"({' / '.join(CREDENTIAL_VARS[0])}), not in the URL")
    if parts.path not in ("", "/"):
        raise StoreError(f"store URL {url!r}: s3://bucket names a bucket only (no key path)")
    options = _options(url, parts.query, allowed={"endpoint", "secure", "region", "part_size_mb"})
    access_key, secret_key = _credentials(url, env)
    secure = options.get("secure", "1")
    if secure not in ("0", "1"):
        raise StoreError(f"store URL {url!r}: secure must be 0 or 1, got {secure!r}")
    part_size_mb = options.get("part_size_mb", "64")
    if not part_size_mb.isdigit():
        raise StoreError(f"store URL {url!r}: part_size_mb must be a whole number, got {part_size_mb!r}")
    return S3Store(options.get("endpoint", AWS_ENDPOINT), access_key, secret_key, parts.netloc,
                   secure=secure == "1", region=options.get("region"), part_size=int(part_size_mb) * MIB,
                   retry_s=_retry_seconds(env))


def _retry_seconds(env: Mapping[str, str]) -> float:
    """INSPATIO_STORE_RETRY_SECONDS: a whole number of seconds, 0 meaning no retries."""
    name = envvars.STORE_RETRY_SECONDS.name
    value = env.get(name, envvars.STORE_RETRY_SECONDS.default).strip()
    if not value.isdigit():
        raise StoreError(f"{name}={value!r}: expected a whole number of seconds (0 or more)")
    return float(value)


def _options(url: str, query: str, allowed: set[str]) -> dict[str, str]:
    options = {name: values[-1] for name, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise StoreError(f"store URL {url!r}: unknown option(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(allowed))}")
    return options


def _credentials(url: str, env: Mapping[str, str]) -> tuple[str, str]:
    for access_var, secret_var in CREDENTIAL_VARS:
        if env.get(access_var) and env.get(secret_var):
            return env[access_var], env[secret_var]
    wanted = " or ".join(f"{access} and {secret}" for access, secret in CREDENTIAL_VARS)
    raise StoreError(f"store URL {url!r} needs S3 credentials: set {wanted}")
