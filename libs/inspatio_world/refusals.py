"""Why a request is refused, as exceptions any layer may raise without importing gRPC.

rpc/errors.py maps each to its status (and to google.rpc rich error details):

- FieldError        INVALID_ARGUMENT   a request field is wrong (BadRequest.FieldViolation names it)
- QuotaExceeded     RESOURCE_EXHAUSTED a limit is reached (QuotaFailure; RetryInfo when waiting helps)
- Unauthenticated   UNAUTHENTICATED    no credentials, or credentials nobody issued
- PermissionDenied  PERMISSION_DENIED  the caller is known but may not do this
- BudgetExceeded    DEADLINE_EXCEEDED  work ran past the time it was given
- VersionNotServed  FAILED_PRECONDITION no generator here serves the model version a job asks for
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class FieldError(ValueError):
    """`field` (a request field path, e.g. "spec.options.freeze_repeat") is invalid: `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def field_of(error: BaseException) -> str:
    """The request field `error` is about: the `field` of a FieldError, or of another ValueError that
    carries one (store InvalidKey, VideoError, TrajectoryError); "" when nobody knows."""
    field = getattr(error, "field", "")
    return field if isinstance(error, ValueError) and isinstance(field, str) else ""


@contextmanager
def fields_under(prefix: str) -> Iterator[None]:
    """Field errors raised inside name fields of the message at `prefix` (e.g. "spec"): the inner code
    names its own field ("options.seed"), the RPC layer where that message sits in its request."""
    try:
        yield
    except ValueError as error:
        if field := field_of(error):
            error.field = f"{prefix}.{field}"  # type: ignore[attr-defined]
        raise


class QuotaExceeded(Exception):
    """`subject` (e.g. "tenant:acme") has reached the limit described; `retry_after_s` when it frees up with time."""

    def __init__(self, subject: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.subject = subject
        self.retry_after_s = retry_after_s


class Unauthenticated(Exception):
    """The caller presented no credentials, or credentials that are not valid here."""


class PermissionDenied(Exception):
    """The caller is authenticated but not allowed to do this."""


class BudgetExceeded(Exception):
    """Work took longer than the time budget it was given."""


class VersionNotServed(Exception):
    """A job (or a generator request) asks for a model version this deployment (or replica) does not serve."""
