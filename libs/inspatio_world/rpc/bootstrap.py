"""Starting a service process: settings from the environment, the store, the server, then the models.

The server starts first and reports NOT_SERVING; weight files are checked and models loaded; only
then does health say SERVING. A weights problem ends the process with the file named, before any
work is accepted.

A service logs to stderr, one JSON object per line (`rpc/logs.py`), transformers' messages included;
it draws no progress bars there. Nothing logs the environment, where the S3 credentials are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import envvars
from ..models.checkpoints import CheckpointError
from ..pipeline.weights import WeightsFolder
from ..store.base import ObjectStore
from ..store.factory import open_store
from .auth import TokenVerifier, service_verifier_from_env
from .limits import ConcurrencyLimiter
from .logs import configure_json_logging
from .server import ServiceServer
from .tls import ServerTLS

log = logging.getLogger(__name__)

# Default ports of the local stack (127.0.0.1); Kubernetes sets the addresses explicitly.
DEFAULT_PORTS = {"coordinator": (50051, 9101), "caption": (50061, 9102), "depthrender": (50062, 9103), "generator": (50063, 9104)}


@dataclass(frozen=True)
class ServiceSettings:
    name: str
    address: str
    metrics_address: str
    store_url: str
    weights_dir: str
    device: str
    max_in_flight: int
    max_queue: int
    drain_seconds: float
    tls: ServerTLS | None = None  # None: plaintext (loopback only, unless allow_plaintext)
    allow_plaintext: bool = False
    shared_gpu: bool = False  # INSPATIO_SHARED_GPU: the GPU is shared with the other services

    @classmethod
    def from_env(cls, name: str) -> "ServiceSettings":
        grpc_port, metrics_port = DEFAULT_PORTS[name]
        device = envvars.get(envvars.DEVICE)
        return cls(
            name=name,
            address=envvars.get(envvars.GRPC_ADDRESS) or f"127.0.0.1:{grpc_port}",
            metrics_address=envvars.get(envvars.METRICS_ADDRESS) or f"127.0.0.1:{metrics_port}",
            store_url=envvars.store_url(),
            weights_dir=envvars.get(envvars.WEIGHTS),
            device=("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device,
            max_in_flight=int(envvars.get(envvars.MAX_IN_FLIGHT)),
            max_queue=int(envvars.get(envvars.MAX_QUEUE)),
            drain_seconds=float(envvars.get(envvars.DRAIN_SECONDS)),
            tls=ServerTLS.from_env(),
            allow_plaintext=envvars.get_flag(envvars.ALLOW_PLAINTEXT),
            shared_gpu=envvars.get_flag(envvars.SHARED_GPU),
        )

    def weights(self) -> WeightsFolder:
        """The weights folder, with the per-model paths set in the environment (INSPATIO_DIT_CHECKPOINT, ...)."""
        if not self.weights_dir:
            raise CheckpointError(f"{envvars.WEIGHTS.name} is not set: the {self.name} service needs a weights folder")
        return WeightsFolder.from_env(Path(self.weights_dir))


def run_service(settings: ServiceSettings, add_functions: Sequence[Callable], load: Callable[[ServiceSettings, ObjectStore, ServiceServer], Sequence[object]],
                limited: bool = True, verifier: Callable[[], TokenVerifier | None] = service_verifier_from_env) -> None:  # fmt: skip
    """Serve until SIGTERM. `load` returns the servicers (in the order of `add_functions`) once the
    models are ready; the server answers health checks (NOT_SERVING) meanwhile. `verifier` says whose
    tokens the application RPCs need (default: a stage service's, the coordinator's service token
    when INSPATIO_SERVICE_TOKEN_FILE is set); a bad token or tenants file stops the start, named."""
    configure_json_logging(logging.INFO)
    _library_output_as_json_logs()
    try:
        token_verifier = verifier()
    except ValueError as exc:
        log.error("%s: cannot start: %s", settings.name, exc)
        raise SystemExit(2) from exc
    store = open_store(settings.store_url)
    limiter = ConcurrencyLimiter(settings.max_in_flight, settings.max_queue) if limited else None
    ready: dict[Callable, object] = {}
    proxies = [(add, _Deferred(ready, add)) for add in add_functions]
    try:
        server = ServiceServer(proxies, address=settings.address, metrics_address=settings.metrics_address, limiter=limiter,
                               grace=settings.drain_seconds, tls=settings.tls, allow_plaintext=settings.allow_plaintext,
                               verifier=token_verifier, after_call=_after_call(settings))  # fmt: skip
    except ValueError as exc:  # a TLS file or setting, plaintext refused off loopback, a bad limit
        log.error("%s: cannot start: %s", settings.name, exc)
        raise SystemExit(2) from exc
    server.start()
    try:
        servicers = load(settings, store, server)
    except (CheckpointError, ValueError) as exc:  # missing weights, or a bad setting
        log.error("%s: cannot start: %s", settings.name, exc)
        server.stop(0)
        raise SystemExit(2) from exc
    ready.update(zip(add_functions, servicers))
    server.set_serving()
    log.info("%s ready on %s (metrics on port %s)", settings.name, server.address, server.metrics_port)
    server.serve_forever()


def _after_call(settings: ServiceSettings) -> Callable[[], None] | None:
    """On a shared GPU, each call's cached memory goes back to the driver once the call ends: the
    depth pass of 81 frames caches ~12 GiB that the generator may need next (bench stack)."""
    if settings.shared_gpu and settings.device.startswith("cuda"):
        return torch.cuda.empty_cache
    return None


def _library_output_as_json_logs() -> None:
    """transformers (which every service imports) logs through its own plain-text handler and draws
    tqdm bars on stderr while loading weights: send its records through the JSON handler instead,
    and draw no bars."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    transformers_logging.disable_progress_bar()


class _Deferred:
    """Registered at start-up; forwards every RPC to the real servicer once the models are loaded
    (before that, health says NOT_SERVING and clients are not routed here)."""

    def __init__(self, ready: dict, key: Callable) -> None:
        self._ready, self._key = ready, key

    def __getattr__(self, method: str):
        def call(request, context):
            servicer = self._ready.get(self._key)
            if servicer is None:
                import grpc

                context.abort(grpc.StatusCode.UNAVAILABLE, "the service is still loading its models")
            return getattr(servicer, method)(request, context)

        return call
