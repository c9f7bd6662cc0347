"""The layers every application RPC runs through, outermost first:

1. observe: in-flight gauge, request counter and latency histogram, one structured log line;
2. errors:  exceptions become statuses (errors.py), so servicers just raise;
3. auth:    with a TokenVerifier (auth.py), the call's bearer token must map to a principal, which is
            `auth.current_principal()` for the call; otherwise UNAUTHENTICATED, before it takes a place;
4. streams: a streaming call (either way) takes a place among the server's open streams (limits.py),
            or is refused at once when they are all taken;
5. limit:   a concurrency slot (limits.py), held until a unary call returns or a stream ends
            (live sessions excepted: they keep their own limit);
6. after:   an optional hook run when the call's work ends, inside its slot (a service sharing its GPU
            returns the memory it cached, bootstrap.py).

Layers wrap the whole call: for a server-streaming method that is every message of the stream, so
latency covers the stream and its place and slot are held until it ends or the client cancels it.
The log line records method, status, time, peer and principal, never metadata (where the token is).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from typing import Any

import grpc
from grpc_health.v1 import health
from grpc_reflection.v1alpha import reflection

from . import errors
from .auth import TokenVerifier, principal_label, principal_set
from ..store.deadline import store_deadline
from .errors import ErrorMap
from .limits import ConcurrencyLimiter, QueueCancelled, QueueTimeout, StreamLimit
from .metrics import ServiceMetrics

RPC_LOG = logging.getLogger("inspatio_world.rpc")

# gRPC's own services are probes and tooling, not work: neither limited, counted nor logged.
UNOBSERVED_SERVICES = frozenset({health.SERVICE_NAME, reflection.SERVICE_NAME})

# Live sessions last minutes and keep their own limit (INSPATIO_MAX_SESSIONS, refused at once when
# full): holding a job slot for a session's life would queue jobs and further sessions behind it.
SELF_LIMITED_SERVICES = frozenset({"inspatio.world.v1.GeneratorSessionService"})

SERVER_FAULTS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS})

Around = Callable[[grpc.ServicerContext], AbstractContextManager[None]]


def _wrap_handler(handler: grpc.RpcMethodHandler, around: Around) -> grpc.RpcMethodHandler:
    # Requests are decoded leniently and checked inside `around`: grpcio answers a request it cannot
    # decode with INTERNAL before any of our code runs, though it is the client's mistake.
    stream_request = handler.stream_unary or handler.stream_stream
    check = errors.decoded_stream if stream_request else errors.decoded

    def unary_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
            with around(context):
                return behavior(check(request), context)

        return wrapped

    def stream_response(behavior: Callable[..., Any]) -> Callable[..., Iterator[Any]]:
        def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with around(context):
                yield from behavior(check(request), context)

        return wrapped

    codecs = {"request_deserializer": errors.lenient_deserializer(handler.request_deserializer),
              "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary_response(handler.unary_unary), **codecs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary_response(handler.stream_unary), **codecs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream_response(handler.unary_stream), **codecs)
    return grpc.stream_stream_rpc_method_handler(stream_response(handler.stream_stream), **codecs)


# Without a deadline gRPC reports ~9.2e18 s remaining, too large for threading's timeouts.
NO_DEADLINE_SECONDS = 1e9


def _time_left(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining < NO_DEADLINE_SECONDS else None


def _deadline_passed(context: grpc.ServicerContext) -> bool:
    return context.time_remaining() <= 0


def _on_termination(context: grpc.ServicerContext, callback: Callable[[], None]) -> None:
    if not context.add_callback(callback):
        callback()  # already terminated


def _final_code(context: grpc.ServicerContext, failure: BaseException | None) -> grpc.StatusCode:
    code = context.code()
    if code is not None and code is not grpc.StatusCode.OK:
        return code  # aborted, by errors.py or by the servicer
    if isinstance(failure, GeneratorExit) or not context.is_active():
        # The client went away (or its deadline passed) before the response was complete.
        return grpc.StatusCode.DEADLINE_EXCEEDED if _deadline_passed(context) else grpc.StatusCode.CANCELLED
    return grpc.StatusCode.OK if failure is None else grpc.StatusCode.UNKNOWN


class ServiceInterceptor(grpc.ServerInterceptor):
    """Applies observe → errors → auth → streams → limit → after to every method of the application services."""

    def __init__(self, metrics: ServiceMetrics, errors: ErrorMap, limiter: ConcurrencyLimiter | None,
                 streams: StreamLimit | None = None, verifier: TokenVerifier | None = None,
                 after_call: Callable[[], None] | None = None) -> None:  # fmt: skip
        self._metrics = metrics
        self._after_call = after_call
        self._verifier = verifier
        self._errors = errors
        self._limiter = limiter
        self._streams = streams

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        full_method = handler_call_details.method
        service, _, method = full_method.lstrip("/").partition("/")
        if handler is None or service in UNOBSERVED_SERVICES:
            return handler
        streaming = handler.request_streaming or handler.response_streaming
        return _wrap_handler(handler, partial(self._around, full_method, service, method, streaming))

    @contextmanager
    def _around(self, full_method: str, service: str, method: str, streaming: bool,
                context: grpc.ServicerContext) -> Iterator[None]:  # fmt: skip
        caller: dict[str, str] = {}  # who made the call, once authenticated: for the log line
        with (
            self._observed(full_method, service, method, context, caller),
            store_deadline(_time_left(context)),  # the store's retries keep to the caller's deadline
            self._errors.translated(context, full_method),
            self._authenticated(context, caller),
            self._stream_place(streaming),
            self._limited(service, context),
            self._followed_by_hook(),
        ):
            yield

    @contextmanager
    def _followed_by_hook(self) -> Iterator[None]:
        try:
            yield
        finally:
            if self._after_call is not None:
                self._after_call()

    @contextmanager
    def _observed(self, full_method: str, service: str, method: str, context: grpc.ServicerContext,
                  caller: dict[str, str]) -> Iterator[None]:  # fmt: skip
        in_flight = self._metrics.in_flight(service)
        in_flight.inc()
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            failure = exc
            raise
        finally:
            seconds = time.perf_counter() - started
            in_flight.dec()
            code = _final_code(context, failure)
            self._metrics.observe_rpc(service, method, code.name, seconds)
            fields: dict[str, Any] = {
                "method": full_method, "status": code.name, "seconds": round(seconds, 4), "peer": context.peer(), **caller
            }
            if code is not grpc.StatusCode.OK and context.details():
                fields["details"] = context.details().decode(errors="replace")
            level = logging.ERROR if code in SERVER_FAULTS else logging.INFO
            RPC_LOG.log(level, "%s %s %.3fs", full_method, code.name, seconds, extra={"fields": fields})

    @contextmanager
    def _authenticated(self, context: grpc.ServicerContext, caller: dict[str, str]) -> Iterator[None]:
        if self._verifier is None:
            yield
            return
        principal = self._verifier.authenticate(context.invocation_metadata())  # Unauthenticated → UNAUTHENTICATED
        caller["principal"] = principal_label(principal)
        with principal_set(principal):
            yield

    @contextmanager
    def _stream_place(self, streaming: bool) -> Iterator[None]:
        if self._streams is None or not streaming:
            yield
            return
        self._streams.acquire()  # TooManyStreams → RESOURCE_EXHAUSTED
        try:
            yield
        finally:
            self._streams.release()

    @contextmanager
    def _limited(self, service: str, context: grpc.ServicerContext) -> Iterator[None]:
        if self._limiter is None or service in SELF_LIMITED_SERVICES:
            yield
            return
        started = time.monotonic()
        try:
            self._limiter.acquire(
                timeout=_time_left(context),
                on_cancel=partial(_on_termination, context),
                queue_gauge=self._metrics.queue_depth(service),
            )
        except QueueCancelled:
            # gRPC ends a call whose deadline passed just like a cancelled one; tell them apart.
            if _deadline_passed(context):
                raise QueueTimeout(time.monotonic() - started) from None
            raise
        try:
            yield
        finally:
            self._limiter.release()
