"""CUDA only: the whole `inspatio bench stack` path (four services, SDK jobs, GPU sampling) on tiny
weights and a small clip, checking the report's keys and that its numbers are real measurements.
(On a CPU the same run takes about 6 minutes on 2 cores, too long for CI.)"""

from __future__ import annotations

import json

import pytest
import torch

from inspatio_world.bench.stack import StackBenchConfig, run_stack_bench
from inspatio_world.pipeline.tiny_weights import write_tiny_weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_bench_stack_reports_every_measurement(tmp_path):
    pytest.importorskip("av")
    weights = write_tiny_weights(tmp_path / "weights")
    config = StackBenchConfig(weights.root, frames=13, height=64, width=112, concurrent=2, second_start=True,
                              work_dir=tmp_path / "work", start_timeout_s=600)  # fmt: skip
    report = json.loads(json.dumps(run_stack_bench(config)))  # what --json-out writes
    assert report["gpu"] and report["random_weights"] is True
    for start in ("cold", "warm_compile_cache"):
        times = report["start_to_serving_s"][start]
        assert set(times) == {"caption", "depthrender", "generator", "coordinator"} and min(times.values()) > 0
    assert report["caption_max_new_tokens"] == 128  # random weights: captions capped at a real one's length
    for job in (*report["cold_jobs"].values(), *report["jobs"].values(), report["other_trajectory"], report["after_second_start"]):
        assert 0 < job["first_block_s"] <= job["done_s"] and job["output_frames"] > 0
        assert {"caption", "depth", "render", "generate"} <= set(job["stages"])
    assert set(report["jobs"]) == set(report["cold_jobs"]) == {"taehv", "wan_vae"}
    assert not report["jobs"]["taehv"]["stages"]["depth"]["cache_hit"]  # forced: the full cost
    assert report["other_trajectory"]["stages"]["depth"]["cache_hit"]
    assert report["other_trajectory"]["stages"]["caption"]["cache_hit"]
    concurrent = report["concurrent"]
    assert concurrent["jobs"] == 2 and concurrent["fps"] > 0 and concurrent["gpus"]
    assert all(gpu["samples"] > 0 and gpu["util_max_pct"] >= gpu["util_mean_pct"] for gpu in concurrent["gpus"].values())
    assert report["service_gpu_mib"]["generator"] is None or report["service_gpu_mib"]["generator"] > 0
