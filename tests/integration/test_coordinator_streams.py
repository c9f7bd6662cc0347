"""Long-lived WatchJob streams against a real coordinator server on 127.0.0.1 (issue 11): they must
never starve health checks or unary calls, beyond a bound they are refused, and each ends when its
job ends, when its client goes away, or when the server drains.

The server, the servicer and the job manager are the real ones; only the stages are a stand-in that
keeps the job running until the test releases it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import VideoRef
from inspatio_world.jobs.options import JobOptions
from inspatio_world.rpc.generated import coordinator_pb2, coordinator_pb2_grpc
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.store.local import LocalStore
from services.coordinator.servicer import CoordinatorServicer
from tests.support.blocked_stages import BlockedStages

WATCHERS = 100
FAST = 0.1  # seconds: the most a health check or GetJob may take while the watchers are open
PROBES = 5
RELEASE_AFTER_S = 30  # the stand-in stages give up waiting for the test after this long


@dataclass
class Watcher:
    """One WatchJob stream, read on its own thread."""

    call: grpc.Call
    events: list[coordinator_pb2.JobEvent] = field(default_factory=list)
    error: grpc.RpcError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        try:
            for event in self.call:
                self.events.append(event)
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.done.set()


@dataclass
class Coordinator:
    server: ServiceServer
    stages: BlockedStages
    manager: JobManager
    channel: grpc.Channel  # the watchers' connection
    probe_channel: grpc.Channel  # a separate connection, as a kubelet's probe has
    job_id: str = ""
    watchers: list[Watcher] = field(default_factory=list)

    @property
    def stub(self) -> coordinator_pb2_grpc.CoordinatorServiceStub:
        return coordinator_pb2_grpc.CoordinatorServiceStub(self.channel)

    def watch(self) -> Watcher:
        watcher = Watcher(self.stub.WatchJob(coordinator_pb2.WatchJobRequest(job_id=self.job_id), timeout=60))
        threading.Thread(target=watcher.read, name="watcher", daemon=True).start()
        self.watchers.append(watcher)
        return watcher

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.probe_channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=60).status

    def get_job(self) -> coordinator_pb2.Job:
        stub = coordinator_pb2_grpc.CoordinatorServiceStub(self.probe_channel)
        return stub.GetJob(coordinator_pb2.GetJobRequest(job_id=self.job_id), timeout=60)


@pytest.fixture
def start(tmp_path) -> Iterator[Callable[..., Coordinator]]:
    started: list[Coordinator] = []

    def start_coordinator(**server_options) -> Coordinator:
        stages = BlockedStages(RELEASE_AFTER_S)
        manager = JobManager(LocalStore(tmp_path / f"store{len(started)}"), stages, max_parallel_jobs=1)
        server = ServiceServer([(coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server, CoordinatorServicer(manager))],
                               metrics_address=None, **server_options).start()  # fmt: skip
        server.set_serving()
        coordinator = Coordinator(server, stages, manager, grpc.insecure_channel(server.address),
                                  grpc.insecure_channel(server.address))  # fmt: skip
        started.append(coordinator)
        video = VideoRef("uploads/never-read.mp4", "0" * 64, 1)  # the stand-in stages never read it
        coordinator.job_id = manager.submit(JobOptions(trajectory_name="x_y_circle_cycle.txt"), video).job_id
        assert coordinator.health() == health_pb2.HealthCheckResponse.SERVING  # both connections up
        return coordinator

    yield start_coordinator
    for coordinator in started:
        coordinator.stages.release.set()
        for watcher in coordinator.watchers:
            watcher.call.cancel()
        coordinator.channel.close()
        coordinator.probe_channel.close()
        coordinator.server.stop(grace=0)
        coordinator.manager.shutdown()


def wait_until(condition: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout} s"
        time.sleep(0.01)


def slowest(call: Callable[[], object], times: int = PROBES) -> float:
    """The longest of `times` calls, in seconds."""
    longest = 0.0
    for _ in range(times):
        started = time.perf_counter()
        call()
        longest = max(longest, time.perf_counter() - started)
    return longest


def streaming(watcher: Watcher) -> bool:
    """Whether the server has started this watcher's stream (the replayed first event arrived)."""
    return bool(watcher.events)


# --- many watchers ----------------------------------------------------------------------------------

def test_a_hundred_watchers_leave_health_and_get_job_answering_at_once(start):
    coordinator = start()
    watchers = [coordinator.watch() for _ in range(WATCHERS)]
    wait_until(lambda: all(map(streaming, watchers)), what=f"all {WATCHERS} watch streams open")

    health_s = slowest(coordinator.health)
    get_job_s = slowest(coordinator.get_job)
    assert all(not w.done.is_set() for w in watchers)  # every stream still open while we measured
    assert health_s < FAST, f"health took {health_s:.3f} s with {WATCHERS} watchers"
    assert get_job_s < FAST, f"GetJob took {get_job_s:.3f} s with {WATCHERS} watchers"
    assert coordinator.get_job().state == coordinator_pb2.JOB_STATE_RUNNING

    coordinator.stages.release.set()
    for watcher in watchers:
        assert watcher.done.wait(10), "a watcher did not hear the job end"
    assert [w.error for w in watchers] == [None] * WATCHERS
    finals = {(w.events[-1].WhichOneof("event"), w.events[-1].finished.state) for w in watchers}
    assert finals == {("finished", coordinator_pb2.JOB_STATE_FAILED)}


# --- the bound on open streams ------------------------------------------------------------------

def test_a_watch_beyond_the_bound_is_refused_with_a_clear_message(start):
    coordinator = start(max_streams=2)
    first, second = coordinator.watch(), coordinator.watch()
    wait_until(lambda: streaming(first) and streaming(second), what="two watch streams open")

    third = coordinator.watch()
    assert third.done.wait(5)
    assert third.error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert third.error.details() == ("too many open streams: this server keeps at most 2 open at once "
                                     "(INSPATIO_MAX_STREAMS); retry later or on another replica")
    assert slowest(coordinator.health) < FAST and slowest(coordinator.get_job) < FAST  # unary: no stream
    upload = coordinator.stub.SubmitJob.future(iter([coordinator_pb2.SubmitJobRequest(chunk=b"x")]), timeout=5)
    assert upload.exception(5).code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # an upload is a stream too

    first.call.cancel()  # a client going away frees its stream's place (and thread) at once
    wait_until(lambda: coordinator.server.streams.open == 1, timeout=2, what="the cancelled watch's place freed")
    fourth = coordinator.watch()
    wait_until(lambda: streaming(fourth), timeout=5, what="a new watch after a client left")
    assert not second.done.is_set()


def test_a_watch_ends_with_its_job(start):
    coordinator = start(max_streams=1)
    watcher = coordinator.watch()
    wait_until(lambda: streaming(watcher), what="the watch stream open")
    coordinator.stub.CancelJob(coordinator_pb2.CancelJobRequest(job_id=coordinator.job_id), timeout=5)
    coordinator.stages.release.set()
    assert watcher.done.wait(10) and watcher.error is None
    assert watcher.events[-1].WhichOneof("event") == "finished"
    # Its place is free again: a watch of the ended job answers at once with the end.
    late = coordinator.watch()
    assert late.done.wait(5) and late.error is None
    assert [e.WhichOneof("event") for e in late.events] == ["finished"]


def test_draining_ends_open_watches(start):
    coordinator = start(grace=0.5)
    watchers = [coordinator.watch() for _ in range(3)]
    wait_until(lambda: all(map(streaming, watchers)), what="three watch streams open")
    started = time.monotonic()
    coordinator.server.stop()
    for watcher in watchers:
        assert watcher.done.wait(5), "a watch outlived the drain"
    assert time.monotonic() - started < 5
    # gRPC ends them with UNAVAILABLE, which the SDK's watch answers by re-opening the stream.
    assert {w.error.code() for w in watchers} == {grpc.StatusCode.UNAVAILABLE}
    # The server's threads are free too: each watch ended, not just its call.
    wait_until(lambda: coordinator.server.streams.open == 0, timeout=2, what="the watches' threads free")


@pytest.mark.parametrize("value", ["0", "many", "-3"])
def test_a_bad_stream_bound_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("INSPATIO_MAX_STREAMS", value)
    with pytest.raises(ValueError, match=f"INSPATIO_MAX_STREAMS='{value}': expected a whole number"):
        ServiceServer([], metrics_address=None)
