"""The autoscaling signal end to end: a real Prometheus, loaded with deploy/prometheus/rules.yml, scrapes
the four real services (local-folder store, tiny weights) while two jobs run, and the recording rules
give the numbers the jobs imply: one Generate call running and one waiting for the generator's single
slot (busy fraction 1, queue 1, and the chart's KEDA query asks for 2 replicas), nothing after (0, 0),
and every generated frame counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspatio_world.client import Client, JobOptions
from inspatio_world.stack import free_port
from tests.support.clips import write_sample_mp4
from tests.support.helm import NAMESPACE, RELEASE, make_helm
from tests.support.prometheus import Prometheus
from tests.support.stacks import local_stack

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"
GENERATOR = 'service="inspatio.world.v1.GeneratorService"'
# 33 frames with adaptive frames off: 3 blocks (9 + 12 + 12 frames), a few seconds each on a CPU, long
# enough for 1 s scrapes and rule evaluations to see a call running and another one waiting.
FRAMES, HEIGHT, WIDTH = 33, 64, 96
TRAJECTORIES = ("orbit_left.txt", "pan_left.txt")


def _chart_demand_query(tmp_path: Path, role: str) -> str:
    """The PromQL the chart gives KEDA for `role` (its ScaledObject's demand trigger)."""
    rendered = make_helm(tmp_path / "helm-home").template(sets=("autoscaling.enabled=true",))
    scaled = rendered.get("ScaledObject", f"{RELEASE}-inspatio-world-{role}")
    [demand] = [t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t.get("name") == "demand"]
    return demand


def _value(result: list[dict]) -> float | None:
    """The one sample's value (None if the query returned nothing)."""
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_weights):
    store = tmp_path_factory.mktemp("store")
    logs = tmp_path_factory.mktemp("logs")
    with local_stack(f"file://{store}", tiny_weights.root, default_ports=False, log_dir=logs,
                     extra_env={"INSPATIO_DEVICE": "cpu"}) as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_sample_mp4(tmp_path_factory.mktemp("clip"), FRAMES, HEIGHT, WIDTH)


def test_busy_fraction_and_queue_follow_the_jobs(stack, video, tmp_path):
    demand = _chart_demand_query(tmp_path, "generator")
    # Scraped as the chart's pods would be: with their namespace, which the chart's query selects on.
    with Prometheus(stack.metrics_addresses, free_port(), rule_files=(RULES,), labels={"namespace": NAMESPACE}) as prometheus, \
            Client(stack.addresses["coordinator"], timeout=120) as client:  # fmt: skip
        up = prometheus.wait_for("up", lambda r: len(r) == 4 and all(s["value"][1] == "1" for s in r))
        assert sorted(s["metric"]["job"] for s in up) == ["caption", "coordinator", "depthrender", "generator"]
        frames_before = _value(prometheus.wait_for('inspatio_frames_generated_total{job="generator"}', bool))
        assert frames_before is not None

        jobs = [client.submit(video, JobOptions.for_trajectory(name, adaptive_frames=False, seed=i))
                for i, name in enumerate(TRAJECTORIES)]  # fmt: skip

        # While one Generate call holds the generator's only slot and the other waits: 2 in flight,
        # 1 queued, so 1 running of 1 slot. One query, so all three come from one evaluation.
        both = (f"inspatio:busy_fraction:ratio{{{GENERATOR}}}"
                f" and on (service) (inspatio:queue_depth:sum == 1) and on (service) (inspatio:rpc_in_flight:sum == 2)")  # fmt: skip
        busy = prometheus.wait_for(both, lambda r: _value(r) is not None, timeout=60)
        assert _value(busy) == 1, f"busy fraction with one call running and one queued: {busy}"
        # The chart's autoscaling query at that moment: demand 2, so 2 generators at the default target 1.
        assert _value(prometheus.query(demand, at=busy[0]["value"][0])) == 2, demand
        assert _value(prometheus.query(f"inspatio:replicas:count{{{GENERATOR}}}")) == 1

        finals = [client.wait(job.job_id, timeout=120) for job in jobs]
        assert [final.state for final in finals] == ["succeeded", "succeeded"], [final.error for final in finals]

        idle = prometheus.wait_for(f"inspatio:busy_fraction:ratio{{{GENERATOR}}}", lambda r: _value(r) == 0)
        assert _value(idle) == 0, idle
        assert _value(prometheus.query(f"inspatio:queue_depth:sum{{{GENERATOR}}}")) == 0

        # every frame of both jobs counted once: 2 x 33
        expected = frames_before + 2 * FRAMES
        frames = prometheus.wait_for('inspatio_frames_generated_total{job="generator"}',
                                     lambda r: _value(r) == expected)  # fmt: skip
        assert _value(frames) == expected
        assert _value(prometheus.query("max_over_time(inspatio:frames_generated:rate1m[2m])")) > 0

        # Block latency from the real histogram, and its alert evaluated on it: pending (for 10 m)
        # exactly when p90 is above real time. No blocks are made any more, so both hold still.
        p90 = _value(prometheus.wait_for("inspatio:block_seconds:p90", lambda r: _value(r) is not None))
        assert p90 is not None and 0 < p90 <= 30
        pending = prometheus.query('ALERTS{alertname="InspatioBlockSlowerThanRealTime",alertstate="pending"}')
        assert bool(pending) == (p90 > 0.5), (p90, pending)
        # The jobs' calls all ended OK: no error ratio above 0, and the generator's is 0, not absent
        # (a finished Generate stream counts OK, not CANCELLED). Waited for: the rate needs the second
        # call's scrape. A service whose counter never moved between two scrapes (caption, depth: the
        # second job hit their cache) has a rate of 0 and a ratio of NaN.
        generator_ok = (f'inspatio:rpc_errors:ratio_rate5m{{{GENERATOR}}} == 0'
                        f' and on (service) sum by (service) (inspatio_rpc_requests_total{{{GENERATOR},code="OK"}}) == 2')  # fmt: skip
        assert prometheus.wait_for(generator_ok, bool), prometheus.query(f"inspatio_rpc_requests_total{{{GENERATOR}}}")
        ratios = prometheus.query("inspatio:rpc_errors:ratio_rate5m")
        errors = {s["metric"]["service"]: float(s["value"][1]) for s in ratios}
        assert not any(ratio > 0 for ratio in errors.values()), errors
