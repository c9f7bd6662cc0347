"""S3 (MinIO, SeaweedFS, AWS, ...) through the minio client.

- The bucket is created on first write, once per store, and a creator racing another one is fine.
- Transient failures (connection errors, timeouts, HTTP 5xx, SlowDown/RequestTimeout/InternalError)
  are retried in place with capped exponential backoff and jitter for up to `retry_s` seconds
  (INSPATIO_STORE_RETRY_SECONDS through open_store), so a store that is down for a while (a restart,
  a failover) delays work instead of failing it; everything else fails at once with a StoreError
  that says what to check (NoSuchKey -> ObjectNotFound, bad keys or secrets -> CredentialsRejected).
  minio's own urllib3 retries are switched off so that this is the only retry policy. (RequestTimeout
  is a 400 that S3 documents as transient: it is retried; every other 4xx is not.) Inside a caller's
  deadline (store/deadline.py) no attempt starts, and no retry waits, past it.
- Uploads larger than `part_size` go multipart; S3 publishes the object only when the upload
  completes, and minio aborts the upload when a part fails, so puts are atomic.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import tempfile
import threading
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Callable, ContextManager, Iterable, Iterator, Mapping, TypeVar

import certifi
import urllib3
from minio import Minio
from minio.error import InvalidResponseError, S3Error, ServerError

from ..refusals import BudgetExceeded
from .base import (CHUNK_SIZE, DEFAULT_CONTENT_TYPE, SHA256_METADATA, CredentialsRejected, ObjectInfo,
                   ObjectNotFound, ObjectStore, StoreError, check_digest, clean_metadata, write_atomically)
from .deadline import time_left
from .keys import validate_bucket, validate_key, validate_prefix

log = logging.getLogger(__name__)

T = TypeVar("T")
MIB = 1 << 20
MIN_PART_SIZE = 5 * MIB  # S3's smallest part except the last
MAX_BACKOFF_S = 10.0
DEFAULT_RETRY_S = 60.0  # INSPATIO_STORE_RETRY_SECONDS's default
USER_METADATA_PREFIX = "x-amz-meta-"
TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                             "OperationAborted"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket"})
CREDENTIAL_CODES = frozenset({"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied",
                              "InvalidToken", "ExpiredToken"})
# Network failures worth another try. SSL errors are not among them: a bad certificate stays bad.
TRANSIENT_NETWORK_ERRORS = (ConnectionError, TimeoutError, urllib3.exceptions.ProtocolError,
                            urllib3.exceptions.NewConnectionError, urllib3.exceptions.TimeoutError)


class S3Store(ObjectStore):
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool = False,
                 region: str | None = None, retries: int | None = None, *, part_size: int = 64 * MIB,
                 backoff_s: float = 0.25, timeout_s: float = 60.0, retry_s: float = DEFAULT_RETRY_S) -> None:
        """`endpoint` is host:port. A transient failure is retried, waiting about backoff_s,
        2*backoff_s, ... (at most MAX_BACKOFF_S) in between, while less than `retry_s` seconds have
        passed since the first attempt, and at most `retries` times when that is given. Objects
        larger than `part_size` (at least 5 MiB) are uploaded in parts of that size."""
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum), got {part_size}")
        self.endpoint = endpoint
        self.bucket = validate_bucket(bucket)
        self.retries, self.retry_s = retries, retry_s
        self.part_size = part_size
        self.backoff_s = backoff_s
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(10.0, timeout_s), read=timeout_s),
            retries=False,  # our retry loop decides; minio's default would retry 5xx five more times
            maxsize=10, cert_reqs="CERT_REQUIRED", ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where())
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure,
                             region=region, http_client=http)
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store({self.endpoint!r}, bucket={self.bucket!r})"

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{validate_key(key)}"

    # -- writes -------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE,
                  metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        validate_key(key)
        metadata = clean_metadata(metadata)
        data = bytes(data)
        return self._put(key, lambda: io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest(),
                         content_type, metadata)

    def put_file(self, key: str, path: Path | str, content_type: str = DEFAULT_CONTENT_TYPE,
                 metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        validate_key(key)
        metadata = clean_metadata(metadata)
        # S3 takes user metadata before the body, so the digest is read first, then the file sent.
        size, sha256 = _digest(_file_chunks(path))
        return self._put(key, lambda: open(path, "rb"), size, sha256, content_type, metadata)

    def put_stream(self, key: str, chunks: Iterable[bytes], content_type: str = DEFAULT_CONTENT_TYPE,
                   metadata: Mapping[str, str] | None = None) -> ObjectInfo:
        # Spooled first (memory up to one part, then a temp file): the digest must be known before the
        # upload starts, a retry needs the bytes again, and a failing iterator then uploads nothing.
        validate_key(key)
        metadata = clean_metadata(metadata)
        with tempfile.SpooledTemporaryFile(max_size=self.part_size) as spool:
            size, sha256 = _digest(chunks, copy_to=spool)
            return self._put(key, lambda: _from_start(spool), size, sha256, content_type, metadata)

    def _put(self, key: str, open_body: Callable[[], ContextManager[BinaryIO]], size: int, sha256: str,
             content_type: str, metadata: dict[str, str]) -> ObjectInfo:
        """Upload `size` bytes with digest `sha256` (key and metadata already checked); `open_body`
        gives the bytes afresh for each attempt."""
        self._ensure_bucket()

        def upload():
            with open_body() as body:
                return self._client.put_object(self.bucket, key, body, size, content_type=content_type,
                                               metadata={**metadata, SHA256_METADATA: sha256},
                                               part_size=self.part_size)

        result = self._call("put", key, upload)
        return ObjectInfo(key, size, sha256, content_type, metadata, etag=result.etag)

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            self._call("delete", key, lambda: self._client.remove_object(self.bucket, key))
        except ObjectNotFound:  # no bucket: nothing to delete
            pass

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if not self._bucket_ready:
                self._call("create bucket", None, self._create_bucket)
                self._bucket_ready = True

    def _create_bucket(self) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket)
        except S3Error as error:
            if error.code != "BucketAlreadyOwnedByYou":  # another process created it first: fine
                raise

    # -- reads --------------------------------------------------------------------------------

    def stat(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        try:
            found = self._call("stat", key, lambda: self._client.stat_object(self.bucket, key))
        except ObjectNotFound:
            return None
        sha256, metadata = _split_metadata(found.metadata)
        return ObjectInfo(key, found.size, sha256, found.content_type, metadata, etag=found.etag)

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)

        def fetch() -> tuple[bytes, str | None]:
            response = self._client.get_object(self.bucket, key)
            try:
                return response.read(), _split_metadata(response.headers)[0]
            finally:
                response.close()
                response.release_conn()

        data, sha256 = self._call("get", key, fetch)
        check_digest(self.bucket, key, sha256, hashlib.sha256(data).hexdigest())
        return data

    def download(self, key: str, path: Path | str) -> Path:
        validate_key(key)

        def fetch() -> Path:
            response = self._client.get_object(self.bucket, key)
            try:
                expected = _split_metadata(response.headers)[0]
                written, _ = write_atomically(path, response.stream(CHUNK_SIZE),
                                              lambda sha: check_digest(self.bucket, key, expected, sha))
                return written
            finally:
                response.close()
                response.release_conn()

        return self._call("download", key, fetch)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        last_key: str | None = None  # a retry resumes after the last key yielded
        attempt, started = 0, time.monotonic()
        while True:
            try:
                for found in self._client.list_objects(self.bucket, prefix=prefix, recursive=True,
                                                       start_after=last_key):
                    last_key = found.object_name
                    yield ObjectInfo(found.object_name, found.size, None, None, {}, etag=found.etag)
                return
            except Exception as error:  # noqa: BLE001 - sorted out by _wait_or_raise
                if isinstance(error, S3Error) and error.code == "NoSuchBucket":
                    return
                self._wait_or_raise(error, attempt, started, "list", prefix)
                attempt += 1

    def presigned_get(self, key: str, expires_s: int = 3600) -> str:
        validate_key(key)
        return self._call("presign GET", key, lambda: self._client.presigned_get_object(
            self.bucket, key, expires=timedelta(seconds=expires_s)))

    def presigned_put(self, key: str, expires_s: int = 3600) -> str:
        """The uploader should send `Content-Type`; the object gets no sha256 metadata this way."""
        validate_key(key)
        self._ensure_bucket()
        return self._call("presign PUT", key, lambda: self._client.presigned_put_object(
            self.bucket, key, expires=timedelta(seconds=expires_s)))

    # -- retries and errors -------------------------------------------------------------------

    def _call(self, action: str, key: str | None, operation: Callable[[], T]) -> T:
        attempt, started = 0, time.monotonic()
        while True:
            left = time_left()
            if left is not None and left <= 0:
                raise BudgetExceeded(f"S3 {action} of {self._where(key)} not attempted: the caller's deadline has passed")
            try:
                return operation()
            except Exception as error:  # noqa: BLE001 - sorted out by _wait_or_raise
                self._wait_or_raise(error, attempt, started, action, key)
                attempt += 1

    def _wait_or_raise(self, error: Exception, attempt: int, started: float, action: str, key: str | None) -> None:
        """Sleep before the next attempt if `error` is transient and the retry budget (time since
        `started`, the count, and the caller's deadline) allows another, else raise. Each retry is
        logged once, naming the bucket, key and endpoint (never the credentials)."""
        elapsed = time.monotonic() - started
        # the last wait is cut to what is left, so the whole budget is used (a store back just in time)
        delay = min(self.backoff_s * 2 ** attempt, MAX_BACKOFF_S) * random.uniform(0.5, 1.0)
        delay = min(delay, self.retry_s - elapsed)
        left = time_left()
        within_count = self.retries is None or attempt < self.retries
        if is_transient(error) and within_count and delay > 0 and (left is None or delay < left):
            log.warning("S3 %s of %s at %s failed (%s); retry %d in %.2f s (%.0f of %.0f s spent)", action,
                        self._where(key), self.endpoint, _describe(error), attempt + 1, delay, elapsed, self.retry_s)
            time.sleep(delay)
            return
        translated = self._translate(error, attempt + 1, action, key, elapsed)
        if translated is None:
            raise error
        raise translated from error

    def _translate(self, error: Exception, attempts: int, action: str, key: str | None,
                   elapsed: float = 0.0) -> StoreError | None:
        """The store's error for a minio/network failure; None for anything else (raised unchanged)."""
        where = f"{self._where(key)} at {self.endpoint}"
        if isinstance(error, S3Error) and error.code in NOT_FOUND_CODES:
            return ObjectNotFound.for_key(self.bucket, key or "")
        if isinstance(error, S3Error) and error.code in CREDENTIAL_CODES:
            return CredentialsRejected(
                f"S3 {action} of {where} refused ({error.code}: {error.message}): check the credentials "
                "(access key and secret key) and that they may use this bucket")
        if is_transient(error):
            return StoreError(f"S3 {action} of {where} failed after {attempts} attempts in {elapsed:.0f} s: "
                              f"{_describe(error)}")
        if isinstance(error, S3Error):
            return StoreError(f"S3 {action} of {where} failed: {error.code}: {error.message}")
        if isinstance(error, (InvalidResponseError, ServerError, urllib3.exceptions.HTTPError)):
            return StoreError(f"S3 {action} of {where} failed: {_describe(error)}")
        return None

    def _where(self, key: str | None) -> str:
        return f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"


def is_transient(error: BaseException) -> bool:
    """Worth retrying: the same request may well succeed in a moment."""
    if isinstance(error, S3Error):
        return error.code in TRANSIENT_CODES or error.response.status >= 500
    if isinstance(error, ServerError):
        return error.status_code >= 500
    if isinstance(error, InvalidResponseError):  # a non-XML answer, e.g. a proxy's 502 page
        return getattr(error, "_code", 0) >= 500  # minio keeps the status only in this attribute
    return isinstance(error, TRANSIENT_NETWORK_ERRORS)


def _describe(error: Exception) -> str:
    if isinstance(error, S3Error):
        return f"{error.code}: {error.message}"
    return f"{type(error).__name__}: {error}"


def _split_metadata(headers: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
    """(recorded sha256, other user metadata) from response headers; names lower-cased, since
    servers differ in case (SeaweedFS answers X-Amz-Meta-model)."""
    metadata = {name.lower()[len(USER_METADATA_PREFIX):]: value for name, value in headers.items()
                if name.lower().startswith(USER_METADATA_PREFIX)}
    return metadata.pop(SHA256_METADATA, None), metadata


def _file_chunks(path: Path | str) -> Iterator[bytes]:
    with open(path, "rb") as source:
        yield from iter(lambda: source.read(CHUNK_SIZE), b"")


def _digest(chunks: Iterable[bytes], copy_to: BinaryIO | None = None) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return size, digest.hexdigest()


def _from_start(spool: BinaryIO) -> ContextManager[BinaryIO]:
    """The spool from its first byte, left open for another attempt."""
    spool.seek(0)
    return nullcontext(spool)
