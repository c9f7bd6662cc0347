"""GPU utilisation and per-process GPU memory, sampled from `nvidia-smi` in a background thread.

nvidia-smi rather than torch: the benchmark process must not open a CUDA context of its own (it
would show up as one more process holding GPU memory). Without nvidia-smi every query answers
nothing, and the report says so instead of failing.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from statistics import mean

GPU_QUERY = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
APPS_QUERY = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]


def _csv_rows(command: list[str]) -> list[list[str]]:
    if shutil.which(command[0]) is None:
        return []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    rows = [[field.strip() for field in line.split(",")] for line in done.stdout.splitlines() if line.strip()]
    return [row for row in rows if all(field.replace(".", "").isdigit() for field in row)]  # drops "[N/A]" rows


def gpu_names() -> list[str]:
    """The name of every GPU nvidia-smi sees ([] without it)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def process_memory_mib() -> dict[int, float]:
    """pid -> MiB of GPU memory it holds now (summed over GPUs)."""
    memory: dict[int, float] = {}
    for pid, used in _csv_rows(APPS_QUERY):
        memory[int(pid)] = memory.get(int(pid), 0.0) + float(used)
    return memory


class GPUMonitor:
    """Samples every `interval` seconds between start() and stop(): per-GPU utilisation (%) and memory
    (MiB), and the peak GPU memory of each process."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {}  # GPU index -> [(util %, MiB)]
        self.process_peak_mib: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-monitor", daemon=True)

    def __enter__(self) -> "GPUMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for index, util, used in _csv_rows(GPU_QUERY):
                self.samples.setdefault(index, []).append((float(util), float(used)))
            for pid, used in process_memory_mib().items():
                self.process_peak_mib[pid] = max(used, self.process_peak_mib.get(pid, 0.0))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def summary(self) -> dict:
        """Per GPU index: samples, utilisation mean/max (%), memory max (MiB); {} without nvidia-smi."""
        return {index: {"samples": len(rows), "util_mean_pct": round(mean(u for u, _ in rows), 1),
                        "util_max_pct": max(u for u, _ in rows), "memory_max_mib": max(m for _, m in rows)}
                for index, rows in self.samples.items()}  # fmt: skip
