"""deploy/prometheus: the rules pass promtool's checks and unit tests, the unit tests catch wrong rules,
and the rules and the dashboard read only metrics the services really export (or rules that record them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from inspatio_world.rpc.metrics import ServiceMetrics

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules.yml"
BUILTIN_METRICS = {"up"}  # written by Prometheus itself for every target

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    if binary is None:  # a skipped rules test looks exactly like a passing one
        pytest.fail("promtool not found: install Debian's prometheus (.ci/run does: apt-get install prometheus)")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def rule_docs() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rule_docs() if "record" in rule}


def exported_metric_names(monkeypatch) -> set[str]:
    """Sample names a service really exposes, every metric exercised once; a stand-in torch with an
    initialised GPU makes the CUDA memory gauge appear."""
    cuda = types.SimpleNamespace(is_available=lambda: True, is_initialized=lambda: True,
                                 memory_allocated=lambda: 1, memory_reserved=lambda: 2)  # fmt: skip
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    metrics = ServiceMetrics()
    metrics.observe_rpc("inspatio.world.v1.GeneratorService", "Generate", "OK", 1.0)
    metrics.in_flight("inspatio.world.v1.GeneratorService").inc()
    metrics.queue_depth("inspatio.world.v1.GeneratorService").inc()
    metrics.observe_stage("caption", 1.0, cache_hit=True)
    metrics.frames_generated(12)
    metrics.observe_block(0.3)
    metrics.set_model("generator", "abc", random=True)
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def metric_names_in(expr: str) -> set[str]:
    """Series names a PromQL expression reads (not functions, keywords, labels or durations)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    names = set(re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr))
    return names - PROMQL_WORDS


def test_metric_names_in_reads_series_not_syntax():
    expr = 'sum by (le) (rate(x_bucket{code!~"OK|y"}[5m])) / on (service) a:b:c or up{job=~"g.*"} * 0 > bool 0.5'
    assert metric_names_in(expr) == {"x_bucket", "a:b:c", "up"}


def test_rules_pass_promtool_check():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rule_docs())} rules found" in result.stdout


def test_rules_pass_their_unit_tests():
    result = promtool("test", "rules", "rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# A plausible mistake in each rule family; the unit tests must catch every one.
MUTATIONS = {
    "busy counts queued calls": ("inspatio:rpc_running:sum / inspatio:replicas:count", "inspatio:rpc_in_flight:sum / inspatio:replicas:count"),
    "running ignores the queue": ("inspatio:rpc_in_flight:sum - (inspatio:queue_depth:sum", "inspatio:rpc_in_flight:sum - 0 * (inspatio:queue_depth:sum"),
    "quantiles per replica": ("sum by (le) (rate(inspatio_block_seconds_bucket[5m]))", "rate(inspatio_block_seconds_bucket[5m])"),
    "client codes are errors": ('code!~"OK|INVALID_ARGUMENT|NOT_FOUND|CANCELLED"', 'code!="OK"'),
    "no zero for error-free services": ("\n          or inspatio:rpc_requests:rate5m * 0\n      - record: inspatio:rpc_errors:ratio", "\n      - record: inspatio:rpc_errors:ratio"),
    "storage ratio of all errors": ('rate(inspatio_rpc_requests_total{code="UNAVAILABLE"}', 'rate(inspatio_rpc_requests_total{code!="OK"}'),
    "real-time threshold": ("inspatio:block_seconds:p90 > 0.5", "inspatio:block_seconds:p90 > 0.7"),
    "every job's up": ('up{job=~".*(caption|depthrender|generator|coordinator).*"} == 0', "up == 0"),
    "queue growing too eager": ("deriv(inspatio:queue_depth:sum[10m]) > 0\n        for: 10m", "deriv(inspatio:queue_depth:sum[10m]) > 0\n        for: 5m"),
    "backlog not per replica": ("inspatio:queue_depth:sum / inspatio:replicas:count >= 2", "inspatio:queue_depth:sum >= 2"),
    "cache ratio inverted": ('rate(inspatio_cache_lookups_total{result="hit"}', 'rate(inspatio_cache_lookups_total{result="miss"}'),
}  # fmt: skip


@pytest.mark.parametrize("mutation", MUTATIONS, ids=list(MUTATIONS))
def test_unit_tests_fail_for_a_wrong_rule(mutation, tmp_path):
    right, wrong = MUTATIONS[mutation]
    rules = RULES.read_text()
    assert rules.count(right) >= 1, f"mutation {mutation!r} no longer matches rules.yml"
    (tmp_path / "rules.yml").write_text(rules.replace(right, wrong))
    shutil.copy(PROMETHEUS_DIR / "rules_test.yml", tmp_path)
    assert promtool("check", "rules", "rules.yml", cwd=tmp_path).returncode == 0  # still valid, just wrong
    result = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert result.returncode != 0, f"the unit tests pass with the mistake {mutation!r}"


def test_rules_read_only_exported_metrics(monkeypatch):
    known = exported_metric_names(monkeypatch) | recorded_names() | BUILTIN_METRICS
    for rule in rule_docs():
        unknown = metric_names_in(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {sorted(unknown)}, which nothing exports"


def test_rules_cover_the_autoscaling_signals():
    assert {"inspatio:queue_depth:sum", "inspatio:busy_fraction:ratio", "inspatio:block_seconds:p50",
            "inspatio:block_seconds:p90", "inspatio:block_seconds:p99", "inspatio:rpc_requests:rate5m",
            "inspatio:rpc_errors:ratio_rate5m"} <= recorded_names()  # fmt: skip
    alerts = {rule["alert"] for rule in rule_docs() if "alert" in rule}
    assert {"InspatioServiceDown", "InspatioQueueGrowing", "InspatioBlockSlowerThanRealTime",
            "InspatioHighErrorRatio", "InspatioStoreUnavailable"} <= alerts  # fmt: skip


def dashboard_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads((PROMETHEUS_DIR / "dashboard.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_reads_only_rules_and_exported_metrics(monkeypatch):
    known = exported_metric_names(monkeypatch) | recorded_names() | BUILTIN_METRICS
    exprs = dashboard_exprs()
    assert exprs, "the dashboard has no queries"
    for title, expr in exprs:
        unknown = metric_names_in(expr) - known
        assert not unknown, f"dashboard panel {title!r} reads {sorted(unknown)}, which nothing exports or records"


def test_dashboard_shows_the_operating_signals():
    read = set().union(*(metric_names_in(expr) for _, expr in dashboard_exprs()))
    assert {"inspatio:queue_depth:sum", "inspatio:busy_fraction:ratio", "inspatio:block_seconds:p90",
            "inspatio:frames_generated:rate1m", "inspatio:cache_hits:ratio_rate5m", "inspatio_gpu_memory_bytes",
            "inspatio:rpc_errors:ratio_rate5m"} <= read  # fmt: skip
    dashboard = json.loads((PROMETHEUS_DIR / "dashboard.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
