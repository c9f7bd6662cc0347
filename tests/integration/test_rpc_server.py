"""The shared gRPC plumbing (rpc/server.py and friends) against real servers on 127.0.0.1.

Test servicers stand in for the real services: CaptionService.Caption does what the request's video
key says (wait, raise...), GeneratorService.Generate streams a block and then waits to be released.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from inspatio_world.cli.job_commands import _refusal
from inspatio_world.client import ErrorDetails, FieldViolation, QuotaViolation, error_details
from inspatio_world.jobs.manifest import VideoRef
from inspatio_world.refusals import FieldError, QuotaExceeded
from inspatio_world.jobs.remote_stages import RemoteStages, StageCallFailed
from inspatio_world.rpc.errors import ErrorMap
from inspatio_world.rpc.generated import caption_pb2, caption_pb2_grpc, common_pb2, depthrender_pb2, generator_pb2, generator_pb2_grpc, session_pb2, session_pb2_grpc
from inspatio_world.rpc.limits import BUSY_RETRY_AFTER_S, ConcurrencyLimiter
from inspatio_world.rpc.logs import JsonFormatter
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.stack import free_port
from inspatio_world.jobs.options import JobOptions
from inspatio_world.stages.generate import BlockPublished, GenerateInputs, GenerateOutput
from inspatio_world.stages.render import RenderOutput
from inspatio_world.store.local import LocalStore

CAPTION = "inspatio.world.v1.CaptionService"
GENERATOR = "inspatio.world.v1.GeneratorService"
SECRET = "secret internals: /opt/weights/token=abc"


class CaptionBehavior(caption_pb2_grpc.CaptionServiceServicer):
    """The video key is a command: "ok", "wait" (until `release`), "raise" (`error`), "abort", "boom"."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.error: Exception | None = None
        self.seen: list[str] = []

    def Caption(self, request: caption_pb2.CaptionRequest, context: grpc.ServicerContext) -> caption_pb2.CaptionResponse:
        key = request.video.key
        self.seen.append(key)
        self.started.set()
        if key == "wait":
            self.release.wait(5)
        elif key == "raise":
            raise self.error
        elif key == "abort":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "weights are still loading")
        elif key == "boom":
            raise RuntimeError(SECRET)
        return caption_pb2.CaptionResponse(caption=f"caption of {key}")


class BlockStreamer(generator_pb2_grpc.GeneratorServiceServicer):
    """Streams one block, then waits for `release` (or the call's end) before the final event."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.closed = threading.Event()

    def Generate(self, request: generator_pb2.GenerateRequest, context: grpc.ServicerContext) -> Iterator[generator_pb2.GenerateEvent]:
        # A cancelled call stops waiting, as the real generator stops at its next block.
        context.add_callback(self.release.set)
        try:
            yield generator_pb2.GenerateEvent(block=common_pb2.BlockGenerated(index=0, blocks=2, frames=4))
            self.release.wait(5)
            yield generator_pb2.GenerateEvent(done=generator_pb2.GenerateResult(frames=8))
        finally:
            self.closed.set()


@dataclass
class Running:
    server: ServiceServer
    caption: CaptionBehavior
    generator: BlockStreamer
    channel: grpc.Channel

    def call(self, key: str, timeout: float = 5) -> caption_pb2.CaptionResponse:
        return self.caption_stub.Caption(caption_request(key), timeout=timeout)

    @property
    def caption_stub(self) -> caption_pb2_grpc.CaptionServiceStub:
        return caption_pb2_grpc.CaptionServiceStub(self.channel)

    @property
    def generator_stub(self) -> generator_pb2_grpc.GeneratorServiceStub:
        return generator_pb2_grpc.GeneratorServiceStub(self.channel)


def caption_request(key: str) -> caption_pb2.CaptionRequest:
    return caption_pb2.CaptionRequest(video=common_pb2.ObjectRef(key=key))


@pytest.fixture
def start() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start_server(limiter: ConcurrencyLimiter | None = None, errors: ErrorMap | None = None,
                     after_call: Callable[[], None] | None = None) -> Running:  # fmt: skip
        caption, generator = CaptionBehavior(), BlockStreamer()
        server = ServiceServer(
            [(caption_pb2_grpc.add_CaptionServiceServicer_to_server, caption),
             (generator_pb2_grpc.add_GeneratorServiceServicer_to_server, generator)],
            limiter=limiter,
            errors=errors or ErrorMap(),
            after_call=after_call,
        ).start()
        started.append(Running(server, caption, generator, grpc.insecure_channel(server.address)))
        return started[-1]

    yield start_server
    for running in started:
        running.channel.close()
        running.server.stop(grace=0)


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def refused(stub: caption_pb2_grpc.CaptionServiceStub) -> bool:
    """Whether a new call is turned away (UNAVAILABLE), as it is once a server drains."""
    try:
        stub.Caption(caption_request("ok"), timeout=1)
    except grpc.RpcError as error:
        return error.code() is grpc.StatusCode.UNAVAILABLE
    return False


def wait_until(condition: Callable[[], bool], timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def scrape(server: ServiceServer) -> dict[tuple[str, frozenset], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def requests_total(server: ServiceServer, method: str, code: str, service: str = CAPTION) -> float:
    labels = frozenset({"service": service, "method": method, "code": code}.items())
    return scrape(server).get(("inspatio_rpc_requests_total", labels), 0.0)


# --- health and reflection ------------------------------------------------------------------------

def test_health_is_not_serving_until_weights_are_loaded(start):
    running = start()
    health = health_pb2_grpc.HealthStub(running.channel)

    def status(service: str) -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

    for service in ("", CAPTION, GENERATOR):
        assert status(service) == health_pb2.HealthCheckResponse.NOT_SERVING
    running.server.set_serving()
    for service in ("", CAPTION, GENERATOR):
        assert status(service) == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(start):
    running = start()
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    names = {service.name for service in response.list_services_response.service}
    assert names == {CAPTION, GENERATOR, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


# --- errors ---------------------------------------------------------------------------------------

def object_not_found() -> Exception:
    from inspatio_world.store.base import ObjectNotFound  # a KeyError and a RuntimeError too

    return ObjectNotFound.for_key("inspatio", "videos/abc.mp4")


def checkpoint_error() -> Exception:
    from inspatio_world.models.checkpoints import CheckpointError  # imports torch: only for this case

    return CheckpointError("generator.safetensors: missing key blocks.0.self_attn.q.weight")


def cuda_out_of_memory() -> Exception:
    import torch

    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


@pytest.mark.parametrize(
    ("make_error", "code", "details"),
    [
        (lambda: ValueError("trajectory line 3: expected 12 numbers, got 11"), grpc.StatusCode.INVALID_ARGUMENT,
         "trajectory line 3: expected 12 numbers, got 11"),
        (lambda: FileNotFoundError("no object videos/abc.mp4 in bucket inspatio"), grpc.StatusCode.NOT_FOUND,
         "no object videos/abc.mp4 in bucket inspatio"),
        (object_not_found, grpc.StatusCode.NOT_FOUND, "object 'videos/abc.mp4' not found in bucket 'inspatio'"),
        (checkpoint_error, grpc.StatusCode.FAILED_PRECONDITION,
         "generator.safetensors: missing key blocks.0.self_attn.q.weight"),
        (cuda_out_of_memory, grpc.StatusCode.RESOURCE_EXHAUSTED,
         "out of GPU memory (CUDA out of memory. Tried to allocate 20.00 GiB); retry later or with a smaller input"),
    ],
    ids=["value", "file-not-found", "object-not-found", "checkpoint", "cuda-oom"],
)
def test_exceptions_become_status_codes_and_the_server_keeps_serving(start, make_error, code, details):
    running = start()
    running.caption.error = make_error()
    error = rpc_error(lambda: running.call("raise"))
    assert (error.code(), error.details()) == (code, details)
    assert running.call("ok").caption == "caption of ok"


QUOTA = "3 jobs running, this tenant's limit is 3 (INSPATIO_MAX_JOBS_PER_TENANT)"


@pytest.mark.parametrize(
    ("make_error", "code", "details", "printed"),
    [
        (lambda: FieldError("spec.options.freeze_repeat", "freeze_repeat -1: must be >= 0"),
         grpc.StatusCode.INVALID_ARGUMENT,
         ErrorDetails(field_violations=(FieldViolation("spec.options.freeze_repeat", "freeze_repeat -1: must be >= 0"),)),
         "INVALID_ARGUMENT: spec.options.freeze_repeat: freeze_repeat -1: must be >= 0"),
        (lambda: QuotaExceeded("tenant:acme", QUOTA, retry_after_s=2.5), grpc.StatusCode.RESOURCE_EXHAUSTED,
         ErrorDetails(quota_violations=(QuotaViolation("tenant:acme", QUOTA),), retry_delay_s=2.5),
         f"RESOURCE_EXHAUSTED: {QUOTA} (retry in 2.5 s)"),
        (lambda: QuotaExceeded("tenant:acme", QUOTA), grpc.StatusCode.RESOURCE_EXHAUSTED,
         ErrorDetails(quota_violations=(QuotaViolation("tenant:acme", QUOTA),)), f"RESOURCE_EXHAUSTED: {QUOTA}"),
        (lambda: ValueError("no field known"), grpc.StatusCode.INVALID_ARGUMENT, ErrorDetails(),
         "INVALID_ARGUMENT: no field known"),
    ],
    ids=["field", "quota-retry", "quota", "plain"],
)
def test_refusals_carry_rich_error_details_and_the_plain_message(start, make_error, code, details, printed):
    running = start()
    running.caption.error = make_error()
    error = rpc_error(lambda: running.call("raise"))
    assert (error.code(), error.details()) == (code, str(running.caption.error))  # old clients read only this
    assert error_details(error) == details
    assert f"{error.code().name}: {_refusal(error)}" == printed  # the CLI's one line


def test_an_asyncio_client_reads_the_same_details(start):
    running = start()
    running.caption.error = QuotaExceeded("tenant:acme", QUOTA, retry_after_s=2.5)

    async def call() -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(running.server.address) as channel:
            try:
                await caption_pb2_grpc.CaptionServiceStub(channel).Caption(caption_request("raise"), timeout=5)
            except grpc.aio.AioRpcError as error:
                return error
        raise AssertionError("the call succeeded")

    assert error_details(asyncio.run(call())) == ErrorDetails(
        quota_violations=(QuotaViolation("tenant:acme", QUOTA),), retry_delay_s=2.5)


def test_a_status_the_servicer_chose_passes_unchanged(start):
    running = start()
    error = rpc_error(lambda: running.call("abort"))
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "weights are still loading")


def test_callers_can_map_their_own_exceptions(start):
    class WeightsStillLoading(Exception):
        pass

    errors = ErrorMap()
    errors.register(WeightsStillLoading, grpc.StatusCode.UNAVAILABLE)
    running = start(errors=errors)
    running.caption.error = WeightsStillLoading("weights are still loading; retry in a minute")
    error = rpc_error(lambda: running.call("raise"))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "weights are still loading; retry in a minute")


def test_unexpected_exception_is_internal_with_the_traceback_only_in_the_log(start, caplog):
    running = start()
    error = rpc_error(lambda: running.call("boom"))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert error.details() == "internal error (RuntimeError); details are in the server log"
    assert SECRET not in error.details()
    logged = [r for r in caplog.records if r.exc_info and SECRET in str(r.exc_info[1])]
    assert logged and "/inspatio.world.v1.CaptionService/Caption" in logged[0].getMessage()
    assert running.call("ok").caption == "caption of ok"


def test_one_json_log_line_per_rpc(start, caplog):
    caplog.set_level(logging.INFO, logger="inspatio_world.rpc")
    running = start()
    running.caption.error = ValueError("trajectory line 3: expected 12 numbers, got 11")
    running.call("ok")
    rpc_error(lambda: running.call("raise"))
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "inspatio_world.rpc"]
    assert [(line["method"], line["status"]) for line in lines] == [
        ("/inspatio.world.v1.CaptionService/Caption", "OK"),
        ("/inspatio.world.v1.CaptionService/Caption", "INVALID_ARGUMENT"),
    ]
    assert all(line["peer"].startswith("ipv4:127.0.0.1:") and line["seconds"] >= 0 for line in lines)
    assert lines[1]["details"] == "trajectory line 3: expected 12 numbers, got 11"


# --- bounded concurrency --------------------------------------------------------------------------

def test_calls_beyond_running_plus_queued_are_refused_at_once(start):
    running = start(ConcurrencyLimiter(max_in_flight=1, max_queue=1))
    first = running.caption_stub.Caption.future(caption_request("wait"), timeout=5)
    running.caption.started.wait(5)
    second = running.caption_stub.Caption.future(caption_request("second"), timeout=5)
    wait_until(lambda: running.server.limiter.queued == 1)
    assert scrape(running.server)[("inspatio_queue_depth", frozenset({("service", CAPTION)}))] == 1

    error = rpc_error(lambda: running.call("third"))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "server busy: 1 running, 1 queued; retry later"
    assert error_details(error).retry_delay_s == BUSY_RETRY_AFTER_S
    assert not first.done() and not second.done()  # refused at once, not queued
    running.caption.release.set()
    assert first.result().caption == "caption of wait"
    assert second.result().caption == "caption of second"
    assert running.caption.seen == ["wait", "second"]  # the refused call never ran


def test_a_queued_call_whose_deadline_passes_never_runs(start):
    running = start(ConcurrencyLimiter(max_in_flight=1, max_queue=1))
    first = running.caption_stub.Caption.future(caption_request("wait"), timeout=5)
    running.caption.started.wait(5)
    late = running.caption_stub.Caption.future(caption_request("late"), timeout=0.5)
    wait_until(lambda: running.server.limiter.queued == 1)
    assert late.exception(5).code() is grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: requests_total(running.server, "Caption", "DEADLINE_EXCEEDED") == 1)
    assert running.server.limiter.queued == 0
    running.caption.release.set()
    assert first.result().caption == "caption of wait"
    assert running.caption.seen == ["wait"]


def test_a_stream_holds_its_slot_until_it_ends(start):
    running = start(ConcurrencyLimiter(max_in_flight=1, max_queue=0))
    events = running.generator_stub.Generate(generator_pb2.GenerateRequest(), timeout=5)
    assert next(events).block.frames == 4

    error = rpc_error(lambda: running.call("ok"))
    assert (error.code(), error.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                               "server busy: 1 running, 0 queued; retry later")
    running.generator.release.set()
    assert [event.done.frames for event in events] == [8]
    assert running.call("ok").caption == "caption of ok"


def test_a_cancelled_stream_gives_its_slot_back(start):
    running = start(ConcurrencyLimiter(max_in_flight=1, max_queue=0))
    events = running.generator_stub.Generate(generator_pb2.GenerateRequest(), timeout=5)
    next(events)
    events.cancel()
    wait_until(lambda: running.generator.closed.is_set() and running.server.limiter.running == 0)
    assert running.call("ok").caption == "caption of ok"
    wait_until(lambda: requests_total(running.server, "Generate", "CANCELLED", GENERATOR) == 1)


def test_the_after_call_hook_runs_when_each_call_ends_in_its_slot(start):
    """INSPATIO_SHARED_GPU's memory release: after every call, whatever its end, while its slot is held."""
    ended: list[int] = []
    running = start(ConcurrencyLimiter(max_in_flight=1, max_queue=0), after_call=lambda: ended.append(running.server.limiter.running))
    running.call("ok")
    assert ended == [1]  # still inside the call's slot
    running.caption.error = ValueError("bad frame")
    rpc_error(lambda: running.call("raise"))
    assert len(ended) == 2
    events = running.generator_stub.Generate(generator_pb2.GenerateRequest(), timeout=5)
    next(events)
    assert len(ended) == 2  # a stream's work is not over at its first message
    events.cancel()
    wait_until(lambda: len(ended) == 3)
    health = health_pb2_grpc.HealthStub(running.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING and len(ended) == 3  # answered; probes are not work


class HeldSession(session_pb2_grpc.GeneratorSessionServiceServicer):
    def __init__(self) -> None:
        self.release = threading.Event()

    def RunSession(self, requests, context):
        context.add_callback(self.release.set)
        yield session_pb2.SessionEvent(ready=session_pb2.SessionReady(session_id="s1"))
        self.release.wait(5)


def test_a_live_session_takes_no_job_slot_and_counts_as_load():
    """Sessions keep their own limit: one open for minutes must not queue the replica's jobs behind it.
    It still counts in inspatio_rpc_in_flight, the metric the chart's autoscaling scales the generators on."""
    sessions = HeldSession()
    server = ServiceServer([(session_pb2_grpc.add_GeneratorSessionServiceServicer_to_server, sessions),
                            (caption_pb2_grpc.add_CaptionServiceServicer_to_server, CaptionBehavior())],
                           limiter=ConcurrencyLimiter(max_in_flight=1, max_queue=0)).start()  # fmt: skip
    channel = grpc.insecure_channel(server.address)
    try:
        events = session_pb2_grpc.GeneratorSessionServiceStub(channel).RunSession(iter([]), timeout=5)
        assert next(events).ready.session_id == "s1"
        caption = caption_pb2_grpc.CaptionServiceStub(channel).Caption(caption_request("ok"), timeout=5)
        assert caption.caption == "caption of ok" and server.limiter.running == 0
        in_flight = ("inspatio_rpc_in_flight", frozenset({"service": "inspatio.world.v1.GeneratorSessionService"}.items()))
        assert scrape(server)[in_flight] == 1.0
        sessions.release.set()
        assert list(events) == []
    finally:
        channel.close()
        server.stop(grace=0)


# --- metrics --------------------------------------------------------------------------------------

def test_metrics_endpoint_counts_requests_by_code_and_latency(start):
    running = start(ConcurrencyLimiter())
    running.caption.error = ValueError("bad trajectory")
    running.call("ok")
    running.call("ok")
    rpc_error(lambda: running.call("raise"))
    metrics = running.server.metrics
    metrics.observe_stage("caption", 0.3, cache_hit=False)
    metrics.observe_stage("caption", 0.01, cache_hit=True)
    metrics.frames_generated(12)
    metrics.observe_block(0.7)
    metrics.set_model("captioner", "0123abcd", random=True)

    samples = scrape(running.server)

    def value(metric: str, /, **labels: str) -> float | None:
        return samples.get((metric, frozenset(labels.items())))

    caption = {"service": CAPTION, "method": "Caption"}
    assert value("inspatio_rpc_requests_total", code="OK", **caption) == 2
    assert value("inspatio_rpc_requests_total", code="INVALID_ARGUMENT", **caption) == 1
    assert value("inspatio_rpc_latency_seconds_count", **caption) == 3
    assert value("inspatio_rpc_latency_seconds_bucket", le="+Inf", **caption) == 3
    assert value("inspatio_rpc_latency_seconds_bucket", le="1.0", **caption) == 3
    assert value("inspatio_rpc_in_flight", service=CAPTION) == 0
    assert value("inspatio_queue_depth", service=CAPTION) == 0
    assert value("inspatio_stage_seconds_count", stage="caption", cache="miss") == 1
    assert value("inspatio_stage_seconds_count", stage="caption", cache="hit") == 1
    assert value("inspatio_cache_lookups_total", stage="caption", result="hit") == 1
    assert value("inspatio_cache_lookups_total", stage="caption", result="miss") == 1
    assert value("inspatio_frames_generated_total") == 12
    assert value("inspatio_block_seconds_count") == 1
    assert value("inspatio_model_info", name="captioner", digest="0123abcd", random="true") == 1
    assert not any("grpc.health" in str(labels) for _, labels in samples)  # probes are not counted
    torch = sys.modules.get("torch")
    has_gpu = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    assert (value("inspatio_gpu_memory_bytes", kind="allocated") is not None) == has_gpu


# --- draining -------------------------------------------------------------------------------------

def test_stop_lets_calls_in_progress_finish_and_refuses_new_ones(start):
    running = start()
    slow = running.caption_stub.Caption.future(caption_request("wait"), timeout=5)
    running.caption.started.wait(5)
    stopper = threading.Thread(target=running.server.stop, kwargs={"grace": 5})
    stopper.start()
    wait_until(lambda: refused(running.caption_stub))
    assert not slow.done()  # refused while the slow call still runs
    running.caption.release.set()
    assert slow.result().caption == "caption of wait"
    stopper.join(5)
    assert not stopper.is_alive()
    assert running.caption.seen[0] == "wait"


DRAINING_SERVICE = """
import os, time
from inspatio_world.rpc.errors import ErrorMap
from inspatio_world.rpc.generated import caption_pb2, caption_pb2_grpc
from inspatio_world.rpc.logs import configure_json_logging
from inspatio_world.rpc.server import ServiceServer

class Sleeper(caption_pb2_grpc.CaptionServiceServicer):
    def Caption(self, request, context):
        release = request.video.key  # a file the test creates to let the call end, or "ok"
        if release != "ok":
            print("started", flush=True)
        while release != "ok" and not os.path.exists(release):
            time.sleep(0.01)
        return caption_pb2.CaptionResponse(caption="finished")

configure_json_logging()
server = ServiceServer([(caption_pb2_grpc.add_CaptionServiceServicer_to_server, Sleeper())], grace=10).start()
server.set_serving()
print(server.port, flush=True)
server.serve_forever()
"""


def test_sigterm_drains_then_exits(tmp_path):
    release = tmp_path / "release"
    process = subprocess.Popen([sys.executable, "-c", DRAINING_SERVICE], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = caption_pb2_grpc.CaptionServiceStub(channel)
            slow = stub.Caption.future(caption_request(str(release)), timeout=10)
            assert process.stdout.readline().strip() == "started"
            process.send_signal(signal.SIGTERM)
            wait_until(lambda: refused(stub))
            assert not slow.done()  # refused while the slow call still runs
            release.touch()
            assert slow.result().caption == "finished"
        assert process.wait(timeout=10) == 0
        logs = [json.loads(line) for line in process.stderr.read().splitlines()]
        assert [line["message"] for line in logs if line["logger"] == "inspatio_world.rpc.server"][1:3] == [
            "received SIGTERM", f"draining 127.0.0.1:{port}: up to 10.0 s for calls in progress"]
        assert {"method": "/inspatio.world.v1.CaptionService/Caption", "status": "OK"}.items() <= logs[-2].items()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- the coordinator's stage client (jobs/remote_stages.py) ------------------------------------------

def stage_client(address: str, tmp_path) -> RemoteStages:
    return RemoteStages(LocalStore(tmp_path / "store"), address, address, address, attempts=2, backoff_s=0.05, timeout_s=10)


def test_a_stage_error_becomes_a_readable_job_error(start, tmp_path):
    running = start()
    stages = stage_client(running.server.address, tmp_path)
    with pytest.raises(StageCallFailed) as caught:
        stages.caption(VideoRef("abort", ""), force=False)
    assert str(caught.value) == "caption: FAILED_PRECONDITION: weights are still loading"
    assert caught.value.code is grpc.StatusCode.FAILED_PRECONDITION
    stages.close()


def test_a_stage_call_waits_for_a_replica_that_is_not_up_yet(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    stages = stage_client(address, tmp_path)
    answers: list[str] = []
    caller = threading.Thread(target=lambda: answers.append(stages.caption(VideoRef("ok", ""), force=False).caption))
    caller.start()
    time.sleep(1.0)  # the call is waiting for the (absent) server, not failing
    assert caller.is_alive() and answers == []
    server = ServiceServer([(caption_pb2_grpc.add_CaptionServiceServicer_to_server, CaptionBehavior())],
                           address=address, metrics_address=None).start()  # fmt: skip
    try:
        caller.join(10)
        assert answers == ["caption of ok"]
    finally:
        stages.close()
        server.stop(grace=0)


def test_a_stage_that_never_becomes_ready_fails_the_call_after_the_wait(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    stages = RemoteStages(LocalStore(tmp_path / "store"), address, address, address, ready_wait_s=0.5)
    started = time.monotonic()
    with pytest.raises(StageCallFailed) as caught:
        stages.depth(VideoRef("ok", ""), force=False)
    assert time.monotonic() - started < 5
    assert caught.value.code is grpc.StatusCode.UNAVAILABLE
    assert str(caught.value) == f"depth: UNAVAILABLE: no replica at {address} became ready within 0.5 s"
    stages.close()


def test_a_generate_stream_read_to_its_result_ends_ok_not_cancelled(start, tmp_path):
    running = start()
    running.generator.release.set()
    stages = stage_client(running.server.address, tmp_path)
    events = stages.generate(GenerateInputs("v", "", "s", "r", "m", "a prompt", 0, "wan_vae"), force=False)
    for event in events:
        if isinstance(event, GenerateOutput):
            events.close()  # as the job runner does once it has the result
            break
    assert event.frames == 8
    wait_until(lambda: requests_total(running.server, "Generate", "OK", GENERATOR) == 1)
    assert requests_total(running.server, "Generate", "CANCELLED", GENERATOR) == 0
    stages.close()


class BreakingStreamer(generator_pb2_grpc.GeneratorServiceServicer):
    """Streams blocks 0 and 1 then the result; the first `breaks` calls end after block 0 with `status`.
    RenderAndGenerate streams its render once published: after block 0 (which needs only the first
    render frames) on a first call, first (from the store) once an earlier call has published it."""

    def __init__(self, breaks: int, status: grpc.StatusCode) -> None:
        self.breaks, self.status, self.calls = breaks, status, 0
        self.published = False

    def Generate(self, request, context) -> Iterator[generator_pb2.GenerateEvent]:
        for event in self._events(context, rendering=False):
            yield generator_pb2.GenerateEvent(**event)

    def RenderAndGenerate(self, request, context) -> Iterator[generator_pb2.RenderAndGenerateEvent]:
        for event in self._events(context, rendering=True):
            yield generator_pb2.RenderAndGenerateEvent(**event)

    def _events(self, context, rendering: bool) -> Iterator[dict]:
        self.calls += 1
        rendered = {"rendered": depthrender_pb2.RenderResponse(frames=21, timing=common_pb2.StageTiming(stage="render"))}
        if rendering and self.published:
            yield rendered
        yield {"block": common_pb2.BlockGenerated(index=0, blocks=2, frames=4)}
        if rendering and not self.published:
            self.published = True
            yield rendered
        if self.calls <= self.breaks:
            context.abort(self.status, "the replica went away")
        yield {"block": common_pb2.BlockGenerated(index=1, blocks=2, frames=4)}
        yield {"done": generator_pb2.GenerateResult(frames=8)}


@pytest.fixture
def breaking():
    servers = []

    def serve(breaks: int, status: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> tuple[BreakingStreamer, str]:
        streamer = BreakingStreamer(breaks, status)
        servers.append(ServiceServer([(generator_pb2_grpc.add_GeneratorServiceServicer_to_server, streamer)],
                                     metrics_address=None).start())  # fmt: skip
        return streamer, servers[-1].address

    yield serve
    for server in servers:
        server.stop(grace=0)


CALLS = ("generate", "render+generate")  # GeneratorService.Generate, RenderAndGenerate


def _generated(stages: RemoteStages, call: str = "generate") -> list:
    try:
        if call == "generate":
            return list(stages.generate(GenerateInputs("v", "", "s", "r", "m", "a prompt", 0, "wan_vae"), force=False))
        options = JobOptions(trajectory_name="orbit_left.txt").render_options()
        return list(stages.render_and_generate(VideoRef("v", ""), "d", options, "a prompt", 0, "wan_vae", force=False))
    finally:
        time.sleep(0.3)  # grpc's connectivity poller (of the ready waits) stops within 0.2 s; closing first races it
        stages.close()


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("status", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED])
def test_a_generate_stream_broken_by_the_server_is_reopened_without_repeating_blocks(breaking, tmp_path, status, call):
    streamer, address = breaking(breaks=2, status=status)
    stages = RemoteStages(LocalStore(tmp_path / "store"), address, address, address, attempts=3, backoff_s=0.05)
    events = _generated(stages, call)
    assert streamer.calls == 3
    blocks = [e for e in events if isinstance(e, BlockPublished)]
    assert [e.index for e in blocks] == [0, 1] and isinstance(events[-1], GenerateOutput)
    if call == "render+generate":  # the render handed over once, where the first call published it
        assert [type(e) for e in events] == [BlockPublished, RenderOutput, BlockPublished, GenerateOutput]
        assert events[1].frames == 21


@pytest.mark.parametrize("call", CALLS)
def test_a_generate_stream_that_keeps_breaking_fails_naming_the_cause_and_attempts(breaking, tmp_path, call):
    streamer, address = breaking(breaks=10)
    stages = RemoteStages(LocalStore(tmp_path / "store"), address, address, address, attempts=3, backoff_s=0.05)
    with pytest.raises(StageCallFailed, match=rf"^{re.escape(call)}: UNAVAILABLE: the replica went away \(after 3 attempts\)"):
        _generated(stages, call)
    assert streamer.calls == 3


@pytest.mark.parametrize("call", CALLS)
def test_a_generate_stream_ended_for_its_request_is_not_reopened(breaking, tmp_path, call):
    streamer, address = breaking(breaks=1, status=grpc.StatusCode.INVALID_ARGUMENT)
    stages = RemoteStages(LocalStore(tmp_path / "store"), address, address, address, attempts=3, backoff_s=0.05)
    with pytest.raises(StageCallFailed, match="INVALID_ARGUMENT"):
        _generated(stages, call)
    assert streamer.calls == 1
