"""The bootstrap every service shares: one gRPC server with health, reflection, metrics, logs and drain.

    server = ServiceServer([(add_CaptionServiceServicer_to_server, CaptionServicer(...))],
                           address="0.0.0.0:50051", metrics_address="0.0.0.0:9100",
                           limiter=ConcurrencyLimiter(max_in_flight=1, max_queue=4),
                           tls=ServerTLS("server.pem", "server.key"))  # off loopback: TLS, or refused
    server.start()                  # health says NOT_SERVING: load balancers send nothing yet
    ...load weights...
    server.metrics.set_model(identity.name, identity.digest, identity.random)
    server.set_serving()            # now SERVING
    server.serve_forever()          # until SIGTERM/SIGINT, then drain and return

Threads: gRPC's sync server runs every call, a stream included, on one thread of its pool for the
call's whole life. The pool has a thread for each heavy call the limiter admits (running or queued),
one for each stream that may be open (`max_streams`, INSPATIO_MAX_STREAMS; one more is refused with
RESOURCE_EXHAUSTED) and SPARE_WORKERS more, which neither can take: long-lived streams (a
coordinator's WatchJob) never starve health checks or unary calls.

Transport (rpc/tls.py): TLS when given `tls` (ServerTLS: certificate, key, and a client CA for
mutual TLS); plaintext only on a loopback address unless `allow_plaintext`. Both are checked, and the
PEM files read, before anything is bound: a bad setting is a `TLSSettingsError` naming it.

Draining (`stop`): health turns NOT_SERVING, new RPCs are refused (UNAVAILABLE, which clients retry
elsewhere), RPCs in progress get `grace` seconds to finish and are cancelled after that.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .. import envvars
from .auth import TokenVerifier
from .errors import DEFAULT_ERRORS, ErrorMap
from .interceptors import ServiceInterceptor
from .limits import ConcurrencyLimiter, StreamLimit
from .metrics import ServiceMetrics
from .tls import ServerTLS, check_plaintext_allowed, is_loopback

log = logging.getLogger(__name__)

AddServicer = Callable[[Any, grpc.Server], None]  # a generated add_<Service>Servicer_to_server

# Threads beyond the limiter's capacity and the open streams: health checks, reflection, unary calls
# the limiter does not cover, and calls that must be refused quickly. A call finding every thread busy
# waits unseen inside gRPC, outside the limiter's queue.
SPARE_WORKERS = 8
DEFAULT_GRACE_SECONDS = 30.0
MAX_CONNECTION_AGE_MS = 5 * 60 * 1000
SIGNAL_CHECK_SECONDS = 0.1


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


PLAINTEXT_ALLOWED = f"plaintext, allowed off loopback by {envvars.ALLOW_PLAINTEXT.name}"


def _transport(tls: ServerTLS | None, address: str) -> str:
    """How the port is served, in words, for the start-up log line."""
    if tls is not None:
        return "mutual TLS" if tls.mutual else "TLS"
    return "plaintext, loopback only" if is_loopback(address) else PLAINTEXT_ALLOWED


class _Registrar:
    """Stands in for the grpc.Server while generated `add_*_to_server` functions run, to learn
    the names of the services they register (for health and reflection)."""

    def __init__(self, server: grpc.Server) -> None:
        self._server = server
        self.service_names: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        handlers = tuple(handlers)
        self.service_names += [h.service_name() for h in handlers if isinstance(h, grpc.ServiceRpcHandler)]
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(service_name, handlers)


class ServiceServer:
    """A gRPC server for `servicers` (pairs of generated add-function and servicer instance)."""

    def __init__(
        self,
        servicers: Sequence[tuple[AddServicer, object]],
        *,
        address: str = "127.0.0.1:0",
        metrics_address: str | None = "127.0.0.1:0",
        limiter: ConcurrencyLimiter | None = None,
        errors: ErrorMap = DEFAULT_ERRORS,
        max_workers: int | None = None,
        max_streams: int | None = None,
        grace: float = DEFAULT_GRACE_SECONDS,
        verifier: TokenVerifier | None = None,
        tls: ServerTLS | None = None,
        allow_plaintext: bool = False,
        after_call: Callable[[], None] | None = None,
    ) -> None:
        """`verifier`: when given, every application RPC must bear a token it accepts (rpc/auth.py);
        `after_call`: run when each application RPC's work ends (interceptors.py)."""
        # settings first: a refused or broken setting binds nothing
        if tls is None:
            check_plaintext_allowed(address, allow_plaintext)
        credentials = tls.credentials() if tls is not None else None
        self.transport = _transport(tls, address)
        self.metrics = ServiceMetrics()
        self.limiter = limiter
        self.streams = StreamLimit(envvars.get_positive_int(envvars.MAX_STREAMS) if max_streams is None else max_streams)
        self.grace = grace
        workers = max_workers or SPARE_WORKERS + (limiter.capacity if limiter else 0) + self.streams.max_open
        self._server = grpc.server(
            # Threads start only when calls need them: a large pool costs nothing while idle.
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
            interceptors=[ServiceInterceptor(self.metrics, errors, limiter, self.streams, verifier, after_call)],
            # gRPC sets SO_REUSEPORT by default: a second server on a taken port would start
            # silently and share its traffic. Fail loudly instead.
            options=[
                ("grpc.so_reuseport", 0),
                # Clients re-resolve a name when a connection ends: ending connections from time to
                # time lets round_robin clients find new replicas. Calls in progress are never cut.
                ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
                ("grpc.max_connection_age_grace_ms", 2**31 - 1),
            ],
        )
        registrar = _Registrar(self._server)
        for add, servicer in servicers:
            add(servicer, registrar)
        self.service_names: tuple[str, ...] = tuple(registrar.service_names)

        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self.set_serving(False)
        reflection.enable_server_reflection(
            (*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )

        if credentials is None:
            self.port: int = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, credentials)
        self.address = f"{address.rpartition(':')[0]}:{self.port}"  # the port actually bound
        self._metrics_address = metrics_address
        self.metrics_port: int | None = None
        self._stop_lock = threading.Lock()
        self._stopping = False
        self._stopped = threading.Event()
        # called when draining starts, before calls in progress get their grace: long-lived streams (live
        # sessions) end themselves cleanly instead of being cancelled
        self.drain_hooks: list[Callable[[], None]] = []

    def start(self) -> ServiceServer:
        self._server.start()
        if self._metrics_address is not None:
            self.metrics_port = self.metrics.start_http(*_split_host_port(self._metrics_address))
        log.log(
            logging.WARNING if self.transport == PLAINTEXT_ALLOWED else logging.INFO,
            "serving %s on %s (%s)", ", ".join(self.service_names), self.address, self.transport,
            extra={"fields": {"services": self.service_names, "address": self.address, "transport": self.transport,
                              "metrics_port": self.metrics_port}},
        )  # fmt: skip
        return self

    def set_serving(self, serving: bool = True) -> None:
        """Report every service (and the server as a whole, "") as SERVING or NOT_SERVING."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            self.health.set(name, status)

    def stop(self, grace: float | None = None) -> None:
        """Drain and stop (see the module docstring); returns once stopped. Safe to call repeatedly."""
        with self._stop_lock:
            already_stopping, self._stopping = self._stopping, True
        if already_stopping:
            self._stopped.wait()
            return
        grace = self.grace if grace is None else grace
        log.info("draining %s: up to %.1f s for calls in progress", self.address, grace,
                 extra={"fields": {"address": self.address, "grace": grace}})
        self.health.enter_graceful_shutdown()  # NOT_SERVING, and stays so
        for hook in self.drain_hooks:
            hook()
        self._server.stop(grace).wait()
        self.metrics.stop_http()  # last: scrapes still work while draining
        log.info("stopped %s", self.address, extra={"fields": {"address": self.address}})
        self._stopped.set()

    def serve_forever(self, handle_signals: bool = True) -> None:
        """Block until the server has been drained: by SIGTERM (Kubernetes' stop) or SIGINT (Ctrl-C)
        when `handle_signals` (main thread only), or by a call to `stop` from another thread."""
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._on_signal)
        # Wait in short slices: a signal the kernel delivers to one of gRPC's threads runs its
        # Python handler only once the main thread wakes up.
        while not self._stopped.wait(SIGNAL_CHECK_SECONDS):
            pass

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s", signal.Signals(signum).name)
        # Drain off the main thread: a signal handler must return quickly.
        threading.Thread(target=self.stop, name="drain").start()
