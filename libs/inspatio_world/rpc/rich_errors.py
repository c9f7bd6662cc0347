"""google.rpc rich error details, both ways: what a refusal carries, and reading it back in a client.

A refusal's status keeps its plain message as the details string (old clients read only that) and adds,
in the `grpc-status-details-bin` trailer, a google.rpc.Status whose details are:

- BadRequest.FieldViolation(field, description)    the request field to change (refusals.field_of),
                                                   e.g. "spec.options.freeze_repeat"
- QuotaFailure.Violation(subject, description)     refusals.QuotaExceeded: whose limit was reached
- RetryInfo(retry_delay)                           when waiting helps (QuotaExceeded.retry_after_s,
                                                   limits.ServerBusy: the server's queue was full)

`error_details(rpc_error)` reads them from a failed call (the SDK exports it).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..refusals import QuotaExceeded, field_of


def detail_messages(exc: BaseException, message: str) -> list:
    """The rich details `exc` carries (possibly none); `message` is the client-facing text."""
    details: list = []
    if field := field_of(exc):
        details.append(error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=field, description=message)]))
    if isinstance(exc, QuotaExceeded):
        details.append(error_details_pb2.QuotaFailure(
            violations=[error_details_pb2.QuotaFailure.Violation(subject=exc.subject, description=message)]))
    retry_after_s = getattr(exc, "retry_after_s", None)  # QuotaExceeded, limits.ServerBusy
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(max(0.0, retry_after_s) * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return details


def rich_status(code: grpc.StatusCode, message: str, details: list) -> grpc.Status:
    """A status for `context.abort_with_status`: `code`, `message` as its details string, and `details`."""
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=packed))


@dataclass(frozen=True)
class FieldViolation:
    field: str  # the request field, as the protos name it (e.g. "spec.options.freeze_repeat")
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    subject: str  # whose limit (e.g. "tenant:acme")
    description: str


@dataclass(frozen=True)
class ErrorDetails:
    """What a refusal says beyond its code and message; empty for a status without rich details."""

    field_violations: tuple[FieldViolation, ...] = ()
    quota_violations: tuple[QuotaViolation, ...] = ()
    retry_delay_s: float | None = None  # wait at least this long before trying again

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(violation.field for violation in self.field_violations)


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """The rich details of a failed call (BadRequest, QuotaFailure, RetryInfo); other details are skipped."""
    try:
        # grpc.Call and grpc.aio's AioRpcError both have the code/details/trailing_metadata it reads
        status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    except (ValueError, DecodeError):  # a trailer that does not match the call's code or message
        status = None
    if status is None:
        return ErrorDetails()
    fields: list[FieldViolation] = []
    quotas: list[QuotaViolation] = []
    retry: float | None = None
    for holder in status.details:
        if holder.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            holder.Unpack(bad)
            fields += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        elif holder.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            holder.Unpack(quota)
            quotas += [QuotaViolation(v.subject, v.description) for v in quota.violations]
        elif holder.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            holder.Unpack(info)
            retry = info.retry_delay.ToNanoseconds() / 1e9
    return ErrorDetails(tuple(fields), tuple(quotas), retry)
