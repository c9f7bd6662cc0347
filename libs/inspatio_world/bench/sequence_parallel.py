"""`inspatio bench generator --sequence-parallel N`: bench/generator.py's DiT figures with every pass
spread over N GPUs of this host (models/sequence_parallel.py), one process per GPU over NCCL.

Each rank builds the same random weights and runs the same timing; rank 0's figures are reported
(its block times are the job's: the exchanges keep the ranks in step). The KV cache and peak memory
are per GPU.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

from ..models.sequence_parallel import SequenceShards, run_in_processes
from .generator import GeneratorBenchConfig, bench_dit


def bench_dit_sequence_parallel(config: GeneratorBenchConfig, progress: Callable[[str], None]) -> dict:
    ranks = config.sequence_parallel
    if torch.cuda.device_count() < ranks:
        raise SystemExit(f"--sequence-parallel {ranks} needs {ranks} GPUs; {torch.cuda.device_count()} visible")
    progress(f"sequence parallel: {ranks} processes, one per GPU (rank 0 reports)")
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "dit.json"
        run_in_processes(_rank_bench, ranks, "nccl", config, str(report))
        return json.loads(report.read_text())


def _rank_bench(shards: SequenceShards, config: GeneratorBenchConfig, report: str) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True  # as run_generator_bench sets it in one process
    figures = bench_dit(config, _to_stderr if shards.rank == 0 else _quiet, shards)
    if shards.rank == 0:
        Path(report).write_text(json.dumps(figures))


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quiet(message: str) -> None:
    pass
