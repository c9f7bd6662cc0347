"""Prometheus metrics of one service process, served on their own HTTP port at /metrics.

The names and labels below are a contract: Prometheus rules, dashboards and the autoscaler use them.
Rename nothing without changing those too.

| metric                          | type      | labels                         | meaning                                        |
|---------------------------------|-----------|--------------------------------|------------------------------------------------|
| inspatio_rpc_requests_total     | counter   | service, method, code          | finished RPCs by gRPC status (OK, INTERNAL...) |
| inspatio_rpc_latency_seconds    | histogram | service, method                | RPC wall time, queueing and streaming included |
| inspatio_rpc_in_flight          | gauge     | service                        | RPCs started and not finished (queued too)     |
| inspatio_queue_depth            | gauge     | service                        | RPCs waiting for a concurrency slot            |
| inspatio_stage_seconds          | histogram | stage, cache ("hit" / "miss")  | time of one pipeline stage                     |
| inspatio_cache_lookups_total    | counter   | stage, result ("hit" / "miss") | was a stage's output already in the store      |
| inspatio_frames_generated_total | counter   |                                | frames the generator produced                  |
| inspatio_block_seconds          | histogram |                                | time to generate one block of frames           |
| inspatio_gpu_memory_bytes       | gauge     | kind ("allocated" / "reserved")| torch CUDA memory; absent without a GPU        |
| inspatio_model_info             | gauge = 1 | name, digest, random           | identity of the weights this process serves    |
| inspatio_sessions_active        | gauge     |                                | live sessions open through this process        |

`service` is the full gRPC service name (e.g. inspatio.world.v1.CaptionService), `method` the bare
method name (Caption), `code` the status name (OK, INVALID_ARGUMENT, RESOURCE_EXHAUSTED...).
Health checks and reflection are not counted. Requests currently running = in_flight - queue_depth.

Each server owns its registry (never prometheus_client's global one), so several servers can live in
one process, as they do in the tests.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

# RPCs range from milliseconds (a cache hit) to many minutes (a whole generation).
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
BLOCK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass  # a scrape every few seconds would flood stderr


class _GpuMemoryCollector(Collector):
    """Reads torch's CUDA allocator at scrape time, so the gauge is always current."""

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        # Never import torch just to report metrics: the coordinator has no GPU and no torch need.
        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return
        family = self._family()
        family.add_metric(["allocated"], torch.cuda.memory_allocated())
        family.add_metric(["reserved"], torch.cuda.memory_reserved())
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "inspatio_gpu_memory_bytes", "CUDA memory held by torch on this process's GPU", labels=["kind"]
        )


class ServiceMetrics:
    """The metrics of one server; services call the `observe_*` methods, the server the RPC ones."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._requests = Counter(
            "inspatio_rpc_requests_total", "Finished RPCs", ["service", "method", "code"], registry=registry
        )
        self._latency = Histogram(
            "inspatio_rpc_latency_seconds", "RPC wall time", ["service", "method"], buckets=RPC_BUCKETS,
            registry=registry,
        )
        self._in_flight = Gauge("inspatio_rpc_in_flight", "RPCs in progress", ["service"], registry=registry)
        self._queue_depth = Gauge(
            "inspatio_queue_depth", "RPCs waiting for a concurrency slot", ["service"], registry=registry
        )
        self._stage_seconds = Histogram(
            "inspatio_stage_seconds", "Time of one pipeline stage", ["stage", "cache"], buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self._cache_lookups = Counter(
            "inspatio_cache_lookups_total", "Store lookups of a stage's output", ["stage", "result"],
            registry=registry,
        )
        self._frames = Counter("inspatio_frames_generated_total", "Frames generated", registry=registry)
        self._block_seconds = Histogram(
            "inspatio_block_seconds", "Time to generate one block", buckets=BLOCK_BUCKETS, registry=registry
        )
        self._model_info = Gauge(
            "inspatio_model_info", "Weights served (value is always 1)", ["name", "digest", "random"],
            registry=registry,
        )
        self._sessions_active = Gauge(
            "inspatio_sessions_active", "Live sessions open (coordinator: relayed; generator: held)", registry=registry
        )
        registry.register(_GpuMemoryCollector())
        self._http: ThreadingWSGIServer | None = None

    # --- called by the server's interceptor -------------------------------------------------------
    def observe_rpc(self, service: str, method: str, code: str, seconds: float) -> None:
        self._requests.labels(service, method, code).inc()
        self._latency.labels(service, method).observe(seconds)

    def in_flight(self, service: str) -> Gauge:
        return self._in_flight.labels(service)

    def queue_depth(self, service: str) -> Gauge:
        return self._queue_depth.labels(service)

    # --- called by services -----------------------------------------------------------------------
    def observe_stage(self, stage: str, seconds: float, cache_hit: bool) -> None:
        """One stage run (e.g. a `stages.artifacts.Timing`); also counts its cache lookup."""
        self._stage_seconds.labels(stage, "hit" if cache_hit else "miss").observe(seconds)
        self.cache_lookup(stage, cache_hit)

    def cache_lookup(self, stage: str, hit: bool) -> None:
        self._cache_lookups.labels(stage, "hit" if hit else "miss").inc()

    def frames_generated(self, frames: int) -> None:
        self._frames.inc(frames)

    def observe_block(self, seconds: float) -> None:
        self._block_seconds.observe(seconds)

    def sessions_active(self) -> Gauge:
        """The live sessions open now: inc() when one opens, dec() when it ends."""
        return self._sessions_active

    def set_model(self, name: str, digest: str, random: bool) -> None:
        """Publish the identity of the loaded weights (replaces an earlier one)."""
        self._model_info.clear()
        self._model_info.labels(name, digest, str(random).lower()).set(1)

    # --- the /metrics endpoint --------------------------------------------------------------------
    def start_http(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0: any free port); returns the bound port."""
        # Like prometheus_client.start_http_server, but polling for shutdown every 0.1 s instead of
        # 0.5 s, so a server (and every test) stops promptly.
        self._http = make_server(host, port, make_wsgi_app(self.registry), ThreadingWSGIServer, _QuietHandler)
        threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True
        ).start()
        return self._http.server_port

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
