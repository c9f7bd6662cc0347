"""Time budgets and prompt cancel on the real services (tiny weights, CPU, a folder store).

A stage call past its budget fails its job with DEADLINE_EXCEEDED naming the stage and the budget,
and the stage service stops computing; a job cancelled while depth, render or generate is working
ends within one batch or block, and the stage service logs the call CANCELLED. The stages are made
slow by real work only: a 120-frame clip gives depth tens of seconds on a CPU, and the tiny profile's
depth output (what render warps and generate fills) is enlarged so that render takes seconds too.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest

from inspatio_world import envvars
from inspatio_world.client import Client, JobOptions
from inspatio_world.jobs.budgets import StageBudgets
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.remote_stages import RemoteStages
from inspatio_world.pipeline.tiny_weights import write_tiny_weights
from inspatio_world.pipeline.weights import PROFILE_FILE
from inspatio_world.stack import LocalStack
from inspatio_world.store.local import LocalStore

from tests.support.clips import write_sample_mp4
from tests.support.stacks import local_stack

FRAMES, HEIGHT, WIDTH = 120, 64, 96  # long enough that depth and render take tens of seconds on a CPU
RENDER_SIZE = (416, 240)  # (width, height): half upstream's 832x480, 14x the tiny profile's pixels
PROMPT = "a quiet street"  # a prompt skips the captioner: the stage under test has the CPU to itself
CANCEL_BOUND_S = 6.0  # cancel -> cancelled: well under a stage's full time here (tens of seconds)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    weights = write_tiny_weights(tmp_path_factory.mktemp("weights"))
    profile = json.loads((weights.root / PROFILE_FILE).read_text())
    profile["depth"]["output_size"] = list(RENDER_SIZE)
    (weights.root / PROFILE_FILE).write_text(json.dumps(profile))
    store = tmp_path_factory.mktemp("store")
    logs = tmp_path_factory.mktemp("logs")
    env = {envvars.DEVICE.name: "cpu", envvars.JOB_LEASE_SECONDS.name: "5"}
    with local_stack(store.as_uri(), weights.root, default_ports=False, log_dir=logs, extra_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def store(stack):
    return LocalStore(Path(stack.store_url.removeprefix("file://")))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[int, Path]:
    """Two clips of different lengths: different videos, so each misses the other's depth cache."""
    return {n: write_sample_mp4(tmp_path_factory.mktemp(f"clip{n}"), n, HEIGHT, WIDTH) for n in (FRAMES, FRAMES + 1)}


@pytest.fixture(scope="module")
def full_times(stack, clips) -> dict[str, float]:
    """How long depth and render take when nobody stops them (a render-only job on the first clip)."""
    with Client(stack.addresses["coordinator"], timeout=600) as client:
        job = client.submit(clips[FRAMES], JobOptions.for_trajectory("orbit_left.txt", prompt=PROMPT, render_only=True))
        final = client.wait(job.job_id, timeout=900)
    assert final.state == "succeeded", final.error
    return {stage: final.timings[stage][0] for stage in ("depth", "render")}


def _rpc_lines(stack: LocalStack, service: str, method: str) -> list[dict]:
    """The service's log lines about calls of `method` (one per finished call)."""
    log = stack.log_dir / f"{service}.log"
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("method", "").endswith(f"/{method}")]


def _wait_for_rpc_line(stack: LocalStack, service: str, method: str, status: str, seen: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _rpc_lines(stack, service, method)[seen:]
        for line in lines:
            if line["status"] == status:
                return line
        time.sleep(0.2)
    raise AssertionError(f"{service} logged no {method} {status} within {timeout} s: {_rpc_lines(stack, service, method)[seen:]}")


def _stopped_after(line: dict, cancelled_at: float) -> float:
    """Seconds from the cancel (time.time()) to the service's log line saying the call ended."""
    return datetime.fromisoformat(line["time"]).timestamp() - cancelled_at


def _cancel(client: Client, job_id: str) -> tuple[float, float, object]:
    """Cancel and wait for the job to stop: (when, time.time(); cancel -> cancelled seconds; final status)."""
    cancelled_at, started = time.time(), time.monotonic()
    final = client.cancel(job_id, wait=True, timeout=120)
    return cancelled_at, time.monotonic() - started, final


def _cancel_during(client: Client, video: Path, options: JobOptions, stage: str, after_s: float) -> tuple[float, float, object]:
    """Submit, wait until `stage` has worked `after_s` seconds, then `_cancel`."""
    job = client.submit(video, options)
    for event in client.watch(job.job_id):
        assert event.kind != "finished", f"the job ended before {stage} started: {event.status}"
        if event.kind == "stage_started" and event.stage == stage:
            break
    time.sleep(after_s)
    return _cancel(client, job.job_id)


def test_budgets_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(envvars.STAGE_BUDGET_BASE_SECONDS.name, "10")
    monkeypatch.setenv(envvars.DEPTH_SECONDS_PER_FRAME.name, "0.5")
    budgets = StageBudgets.from_env()
    assert budgets.seconds("depth", 100) == 60.0
    assert budgets.seconds("generate", 3) == 10 + 3 * float(envvars.GENERATE_SECONDS_PER_BLOCK.default)
    monkeypatch.setenv(envvars.RENDER_SECONDS_PER_FRAME.name, "0")
    with pytest.raises(ValueError, match=envvars.RENDER_SECONDS_PER_FRAME.name):
        StageBudgets.from_env()


def test_a_stage_call_past_its_budget_fails_the_job_and_the_stage_stops(stack, store, clips):
    stages = RemoteStages(store, stack.addresses["caption"], stack.addresses["depthrender"], stack.addresses["generator"])
    budgets = StageBudgets(base_s=1.0, depth_per_frame_s=0.01)  # 2.2 s for 120 frames; depth takes far longer here
    manager = JobManager(store, stages, budgets=budgets)
    seen = len(_rpc_lines(stack, "depthrender", "EstimateDepth"))
    try:
        video = manager.upload_video([clips[FRAMES].read_bytes()], "clip.mp4")
        assert video.frames == FRAMES  # admission's count: what the budget is made from
        job = manager.submit(JobOptions.for_trajectory("orbit_left.txt", prompt=PROMPT, force=True), video)
        started = time.monotonic()
        final = list(manager.watch(job.job_id))[-1].manifest
        took = time.monotonic() - started
    finally:
        manager.shutdown()
        stages.close()
    assert final.state == "failed"
    assert final.error.startswith("DEADLINE_EXCEEDED: the depth stage ran past its time budget of 2.2 s"), final.error
    assert took < 2.2 + CANCEL_BOUND_S
    # the service stopped computing at its deadline, not when the depth was done
    line = _wait_for_rpc_line(stack, "depthrender", "EstimateDepth", "DEADLINE_EXCEEDED", seen, timeout=30)
    assert line["seconds"] < 2.2 + CANCEL_BOUND_S, line


def test_cancel_during_depth_stops_it_within_a_layer(stack, clips, full_times):
    seen = len(_rpc_lines(stack, "depthrender", "EstimateDepth"))
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        # the other clip: its depth is not cached
        cancelled_at, took, final = _cancel_during(
            client, clips[FRAMES + 1], JobOptions.for_trajectory("orbit_left.txt", prompt=PROMPT), "depth", after_s=1.0)
    assert final.state == "cancelled", final.error
    assert took < min(CANCEL_BOUND_S, full_times["depth"] / 3)
    line = _wait_for_rpc_line(stack, "depthrender", "EstimateDepth", "CANCELLED", seen, timeout=CANCEL_BOUND_S)
    stopped = _stopped_after(line, cancelled_at)  # the service stopped computing too, within a layer
    print(f"cancel during depth: job cancelled in {took:.2f} s, service stopped in {stopped:.2f} s "
          f"(depth alone takes {full_times['depth']:.1f} s)")  # fmt: skip
    assert stopped < min(CANCEL_BOUND_S, full_times["depth"] / 3)


def test_cancel_during_render_stops_it_within_a_chunk(stack, clips, full_times):
    seen = len(_rpc_lines(stack, "depthrender", "Render"))
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        # another trajectory: depth is cached, the render is not; render-only, so the depthrender service
        # renders (a full job's render is made inside the generator's call, INSPATIO_STREAM_RENDER)
        cancelled_at, took, final = _cancel_during(
            client, clips[FRAMES], JobOptions.for_trajectory("pan_left.txt", prompt=PROMPT, render_only=True), "render", after_s=1.0)
    assert final.state == "cancelled", final.error
    assert took < min(CANCEL_BOUND_S, full_times["render"] / 3)
    line = _wait_for_rpc_line(stack, "depthrender", "Render", "CANCELLED", seen, timeout=CANCEL_BOUND_S)
    stopped = _stopped_after(line, cancelled_at)  # within a chunk
    print(f"cancel during render: job cancelled in {took:.2f} s, service stopped in {stopped:.2f} s "
          f"(render alone takes {full_times['render']:.1f} s)")  # fmt: skip
    assert stopped < min(CANCEL_BOUND_S, full_times["render"] / 3)


def test_cancel_during_generate_stops_it_within_a_block(stack, clips, full_times):
    # a full job's generator call renders too (RenderAndGenerate; here its render is in the store)
    seen = len(_rpc_lines(stack, "generator", "RenderAndGenerate"))
    with Client(stack.addresses["coordinator"], timeout=120) as client:
        # the render-only job's trajectory: caption skipped, depth and render cached, generation starts at once
        job = client.submit(clips[FRAMES], JobOptions.for_trajectory("orbit_left.txt", prompt=PROMPT))
        block_seconds = None
        for event in client.watch(job.job_id):
            assert event.kind != "finished", event.status
            if event.kind == "block":
                block_seconds = event.seconds
                break
        time.sleep(2.0)  # into the next block
        cancelled_at, took, final = _cancel(client, job.job_id)
    assert final.state == "cancelled", final.error
    assert final.blocks_done < final.blocks_total
    assert took < CANCEL_BOUND_S
    line = _wait_for_rpc_line(stack, "generator", "RenderAndGenerate", "CANCELLED", seen, timeout=block_seconds + 10)
    stopped = _stopped_after(line, cancelled_at)
    print(f"cancel during generate: job cancelled in {took:.2f} s, service stopped in {stopped:.2f} s "
          f"(a block takes {block_seconds:.1f} s, the call {final.blocks_total} blocks)")  # fmt: skip
    # Within the block in progress (checks come before each step; on a CPU the tiny Wan VAE's encode and
    # decode, which no check splits, take most of a block), far from the call's remaining blocks.
    assert stopped < block_seconds + 3.0
    assert final.blocks_total >= 3
