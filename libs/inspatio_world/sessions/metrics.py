"""Prometheus metrics of live sessions, registered on a server's registry (rpc/metrics.py's contract table
continues here):

| metric                                      | type      | meaning                                                   |
|---------------------------------------------|-----------|-----------------------------------------------------------|
| inspatio_sessions_active                    | gauge     | live sessions open (the generator replica's, or the coordinator's) |
| inspatio_session_block_seconds              | histogram | render + encode + generate + decode of one session block |
| inspatio_session_command_to_frame_seconds   | histogram | command received -> the block using it is ready          |
| inspatio_session_blocks_dropped_total       | counter   | blocks dropped by backpressure "latest"                   |
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..rpc.metrics import BLOCK_BUCKETS
from .session import SessionObservers

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60)


class SessionMetrics:
    def __init__(self, registry: CollectorRegistry, active: Gauge | None = None) -> None:
        """`active`: the server's inspatio_sessions_active (ServiceMetrics.sessions_active(), which every
        server's registry already holds); None: registered here (a registry of the caller's own)."""
        self.active = active if active is not None else Gauge("inspatio_sessions_active", "Live sessions open", registry=registry)
        self.block_seconds = Histogram("inspatio_session_block_seconds", "Time to make one session block",
                                       buckets=BLOCK_BUCKETS, registry=registry)  # fmt: skip
        self.command_to_frame = Histogram("inspatio_session_command_to_frame_seconds",
                                          "Session command received to the block using it ready", buckets=LATENCY_BUCKETS,
                                          registry=registry)  # fmt: skip
        self.dropped = Counter("inspatio_session_blocks_dropped_total", "Session blocks dropped (backpressure latest)",
                               registry=registry)  # fmt: skip

    def observers(self) -> SessionObservers:
        return SessionObservers(self.block_seconds.observe, self.command_to_frame.observe, self.dropped.inc)
