"""The one place that turns library exceptions into gRPC status codes, so servicers can just raise.

- ValueError (TrajectoryError, VideoError, ...)        → INVALID_ARGUMENT, with the exception's message
- refusals.QuotaExceeded / Unauthenticated /           → RESOURCE_EXHAUSTED / UNAUTHENTICATED /
  PermissionDenied / BudgetExceeded                      PERMISSION_DENIED / DEADLINE_EXCEEDED
- stopping.WorkStopped (the caller went away)   → CANCELLED
- store InvalidKey (bad key, job id, upload name)      → INVALID_ARGUMENT (a StoreError too, but a caller's
                                                         mistake: never UNAVAILABLE, which clients retry)
- FileNotFoundError, store ObjectNotFound              → NOT_FOUND, with the message
- CheckpointError, refusals.VersionNotServed           → FAILED_PRECONDITION, with the message
- torch.cuda.OutOfMemoryError                          → RESOURCE_EXHAUSTED ("out of GPU memory ..."); the
                                                         CUDA cache is freed and the server keeps serving
- limits.ServerBusy / QueueTimeout / QueueCancelled    → RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED / CANCELLED
- grpc.RpcError of a downstream call                   → its own code and details
- anything else                                        → INTERNAL with a short message; traceback to the log

Undecodable requests: grpcio's sync server deserializes a request in its own code, before any
interceptor or servicer runs, and answers INTERNAL ("Exception deserializing request!") when the
handler's request_deserializer raises. `lenient_deserializer` returns an UndecodableRequest (a
ValueError) instead of raising; the handler wrapper then raises it with `decoded` / `decoded_stream`
inside `translated`, so the client gets INVALID_ARGUMENT (rpc/interceptors.py wraps every handler so).

Refusals also carry google.rpc rich error details (rich_errors.py): BadRequest.FieldViolation for a
ValueError that knows its request field (refusals.FieldError, InvalidKey, VideoError, TrajectoryError),
QuotaFailure for QuotaExceeded, RetryInfo when waiting helps (QuotaExceeded.retry_after_s, ServerBusy).

The most specific rule wins (a rule for a subclass beats one for its base). Rules may name a class
as "module:Class": it is matched only once that module has been imported by someone else, because an
exception of a class whose module was never imported cannot exist. That keeps torch and the store out
of processes that do not use them, and lets callers register their own classes (`register`).
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from ..refusals import BudgetExceeded, PermissionDenied, QuotaExceeded, Unauthenticated, VersionNotServed
from ..stopping import WorkStopped
from .limits import QueueCancelled, QueueTimeout, ServerBusy
from .rich_errors import detail_messages, rich_status

log = logging.getLogger(__name__)

ExceptionRef = type[BaseException] | str  # a class, or "module:QualName" resolved lazily

DEFAULT_RULES: tuple[tuple[ExceptionRef, grpc.StatusCode], ...] = (
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
    (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (BudgetExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (VersionNotServed, grpc.StatusCode.FAILED_PRECONDITION),
    (WorkStopped, grpc.StatusCode.CANCELLED),
    (FileNotFoundError, grpc.StatusCode.NOT_FOUND),
    ("inspatio_world.store.base:ObjectNotFound", grpc.StatusCode.NOT_FOUND),
    ("inspatio_world.store.base:InvalidKey", grpc.StatusCode.INVALID_ARGUMENT),
    # The store refusing our credentials is a deployment problem; any other store failure (it is
    # down, or timing out after the store's own retries) is worth retrying later.
    ("inspatio_world.store.base:CredentialsRejected", grpc.StatusCode.FAILED_PRECONDITION),
    ("inspatio_world.store.base:StoreError", grpc.StatusCode.UNAVAILABLE),
    ("inspatio_world.models.checkpoints:CheckpointError", grpc.StatusCode.FAILED_PRECONDITION),
    ("torch:OutOfMemoryError", grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ServerBusy, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (QueueTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (QueueCancelled, grpc.StatusCode.CANCELLED),
)

MAX_MESSAGE = 500  # characters of an exception's message sent to the client


def _resolve(ref: ExceptionRef) -> type[BaseException] | None:
    if isinstance(ref, type):
        return ref
    module_name, _, qualname = ref.partition(":")
    if module_name not in sys.modules:
        return None
    found: object = importlib.import_module(module_name)  # already imported: just a lookup
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) else None


def _is_cuda_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def _message(exc: BaseException) -> str:
    if _is_cuda_oom(exc):
        # torch's message is one long line; its first two sentences say what was asked for.
        asked = ". ".join(str(exc).split(". ")[:2]).rstrip(".")
        return f"out of GPU memory ({asked}); retry later or with a smaller input"
    # KeyError-like classes quote a lone argument in str(); their argument is the readable text.
    text = exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    text = text or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _free_cuda_memory(exc: BaseException) -> None:
    # The traceback's frames still hold the failed request's tensors; drop them before emptying
    # the cache, or the memory stays taken until the exception object dies.
    traceback.clear_frames(exc.__traceback__)
    torch = sys.modules["torch"]
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class ErrorMap:
    """Exception → status rules; `translated` applies them around a servicer call."""

    def __init__(self, rules: Iterable[tuple[ExceptionRef, grpc.StatusCode]] = DEFAULT_RULES) -> None:
        self._rules: list[tuple[ExceptionRef, grpc.StatusCode]] = list(rules)

    def register(self, exc: ExceptionRef, code: grpc.StatusCode) -> None:
        self._rules.append((exc, code))

    def status_for(self, exc: BaseException) -> tuple[grpc.StatusCode, str]:
        """The status and client-facing message for `exc`."""
        if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
            return exc.code(), exc.details() or ""  # a downstream service already chose its status
        resolved: dict[type[BaseException], grpc.StatusCode] = {}
        for ref, rule_code in self._rules:
            if (cls := _resolve(ref)) is not None:
                resolved[cls] = rule_code
        for cls in type(exc).__mro__:
            if cls in resolved:
                return resolved[cls], _message(exc)
        return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); details are in the server log"

    @contextmanager
    def translated(self, context: grpc.ServicerContext, method: str) -> Iterator[None]:
        """Turn an exception raised inside into `context.abort` with the mapped status."""
        try:
            yield
        except Exception as exc:
            if context.code() not in (None, grpc.StatusCode.OK):
                raise  # the servicer chose a status itself (context.abort)
            code, message = self.status_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.error("%s failed", method, exc_info=exc)
            if _is_cuda_oom(exc):
                log.warning("%s ran out of GPU memory: %s", method, exc)
                _free_cuda_memory(exc)
            if details := detail_messages(exc, message):
                context.abort_with_status(rich_status(code, message, details))  # raises, like abort
            context.abort(code, message)


DEFAULT_ERRORS = ErrorMap()


class UndecodableRequest(ValueError):
    """The request's bytes are not a valid message of the method's request type (INVALID_ARGUMENT)."""


def lenient_deserializer(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserialize` returning an UndecodableRequest instead of raising (see the module docstring)."""
    if deserialize is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:
            return UndecodableRequest(
                f"the request could not be decoded as this method's message ({error or type(error).__name__}); "
                "check that the client uses the same .proto as the server")

    return decode


def decoded(request: Any) -> Any:
    """`request`, or its UndecodableRequest raised (call inside `translated`)."""
    if isinstance(request, UndecodableRequest):
        raise request
    return request


def decoded_stream(requests: Iterable[Any]) -> Iterator[Any]:
    """The requests of a client stream, raising at the first one that did not decode."""
    for request in requests:
        yield decoded(request)
