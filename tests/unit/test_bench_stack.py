"""`inspatio bench stack`, the parts that run without a GPU: the nvidia-smi sampling and its summary,
pid -> service memory, GPU placement per service, and clear refusals (no CUDA, incomplete weights).
The whole benchmark path runs in tests/gpu/test_bench_stack.py (tiny weights on a CUDA machine)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from inspatio_world.bench import gpu_monitor
from inspatio_world.bench.local_stack import caption_tokens, check_inputs, service_env, service_memory
from inspatio_world.bench.stack import StackBenchConfig


def _fake_smi(monkeypatch, gpus: list[list[str]], apps: list[list[str]]) -> None:
    monkeypatch.setattr(gpu_monitor, "_csv_rows", lambda command: gpus if command == gpu_monitor.GPU_QUERY else apps)


def test_monitor_summarises_utilisation_and_process_peaks(monkeypatch):
    readings = iter([10.0, 50.0, 90.0])

    def rows(command):
        if command == gpu_monitor.GPU_QUERY:
            util = next(readings, 90.0)
            return [["0", str(util), str(1000 + util)]]
        return [["41", "300"], ["42", "700"], ["41", "200"]]  # pid 41 on two GPUs

    monkeypatch.setattr(gpu_monitor, "_csv_rows", rows)
    with gpu_monitor.GPUMonitor(interval=0.01) as monitor:
        while len(monitor.samples.get("0", [])) < 4:
            time.sleep(0.01)
    summary = monitor.summary()["0"]
    assert summary["util_max_pct"] == 90.0 and summary["memory_max_mib"] == 1090.0
    assert 10.0 < summary["util_mean_pct"] < 90.0
    assert monitor.process_peak_mib == {41: 500.0, 42: 700.0}


def test_monitor_without_nvidia_smi_reports_nothing(monkeypatch):
    monkeypatch.setattr(gpu_monitor.shutil, "which", lambda _: None)
    assert gpu_monitor.gpu_names() == [] and gpu_monitor.process_memory_mib() == {}
    with gpu_monitor.GPUMonitor(interval=0.01) as monitor:
        time.sleep(0.05)
    assert monitor.summary() == {}


def test_service_memory_maps_pids_to_services(monkeypatch):
    _fake_smi(monkeypatch, [], [["12", "2048"], ["99", "5"]])
    stack = SimpleNamespace(processes={name: SimpleNamespace(pid=pid) for name, pid in
                                       (("caption", 11), ("generator", 12), ("coordinator", 13))})  # fmt: skip
    memory = service_memory(stack, peaks={11: 4096.0})
    assert memory == {"caption": 4096.0, "generator": 2048.0, "coordinator": None}


def test_conditioning_and_generator_on_different_gpus(tmp_path):
    env = service_env(StackBenchConfig(tmp_path, conditioning_gpu="0", generator_gpu="1"))
    assert env == {"caption": {"CUDA_VISIBLE_DEVICES": "0"}, "depthrender": {"CUDA_VISIBLE_DEVICES": "0"},
                   "generator": {"CUDA_VISIBLE_DEVICES": "1"}}  # fmt: skip
    assert service_env(StackBenchConfig(tmp_path)) == {}  # default: every service sees what the caller sees


def test_random_weights_cap_the_caption_real_ones_do_not(tmp_path):
    assert caption_tokens(StackBenchConfig(tmp_path), random_weights=True) == 128
    assert caption_tokens(StackBenchConfig(tmp_path), random_weights=False) is None
    assert caption_tokens(StackBenchConfig(tmp_path, caption_max_new_tokens=40), random_weights=False) == 40
    assert service_env(StackBenchConfig(tmp_path), 128) == {"caption": {"INSPATIO_CAPTION_MAX_NEW_TOKENS": "128"}}


def test_incomplete_weights_fail_before_anything_starts(tmp_path):
    pytest.importorskip("av")
    with pytest.raises(SystemExit, match="random-full"):
        check_inputs(StackBenchConfig(tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bench_stack_refuses_without_cuda(tmp_path, capsys):
    from inspatio_world.cli import main

    assert main(["bench", "stack", "--weights", str(tmp_path)]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_stack_passes_per_service_environment(tmp_path):
    from inspatio_world.stack import LocalStack

    stack = LocalStack("file:///nowhere", Path(tmp_path), default_ports=False, extra_env={"A": "all"},
                       service_env={"generator": {"A": "gen", "CUDA_VISIBLE_DEVICES": "1"}})  # fmt: skip
    stack.spawn = lambda name: None  # no processes: only the environments are looked at
    stack.wait_ready = lambda timeout, names=None: None
    stack.start()
    assert stack._envs["generator"]["A"] == "gen" and stack._envs["generator"]["CUDA_VISIBLE_DEVICES"] == "1"
    assert stack._envs["caption"]["A"] == "all"
    assert stack._envs["generator"]["INSPATIO_SHARED_GPU"] == "0"  # the generator has a GPU of its own
    stack.stop()


@pytest.mark.parametrize("caller, expected", [(None, "1"), ("0", "0")])
def test_services_on_one_gpu_share_it_unless_the_caller_says_otherwise(tmp_path, monkeypatch, caller, expected):
    from inspatio_world.stack import LocalStack

    if caller is not None:
        monkeypatch.setenv("INSPATIO_SHARED_GPU", caller)
    stack = LocalStack("file:///nowhere", Path(tmp_path), default_ports=False,
                       service_env={name: {"CUDA_VISIBLE_DEVICES": "0"} for name in ("caption", "depthrender", "generator")})  # fmt: skip
    stack.spawn = lambda name: None
    stack.wait_ready = lambda timeout, names=None: None
    stack.start()
    assert {stack._envs[name]["INSPATIO_SHARED_GPU"] for name in ("caption", "depthrender", "generator")} == {expected}
    stack.stop()
