"""Object store: S3 through minio, or a local directory as the embedded default; key layout in `keys`."""

from .base import CredentialsRejected, InvalidKey, ObjectInfo, ObjectNotFound, ObjectStore, StoreError
from .factory import open_store
from .keys import content_key, job_prefix, manifest_key, upload_key
from .local import LocalStore
from .s3 import S3Store

__all__ = ["CredentialsRejected", "InvalidKey", "LocalStore", "ObjectInfo", "ObjectNotFound", "ObjectStore",
           "S3Store", "StoreError", "content_key", "job_prefix", "manifest_key", "open_store", "upload_key"]
