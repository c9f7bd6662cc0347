"""`inspatio bench session`, the parts that need no stack: a command's latency is the first block that
echoes its stamp (or a later one), fps counts frames after the first block, percentiles, the CLI's
options (the SDK's command stamps: tests/unit/test_session_command_stamps.py). The whole benchmark runs on tiny weights in tests/integration/test_bench_session.py."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.bench.session import SessionBenchConfig, SessionRun, percentiles, session_bench_config
from inspatio_world.cli import build_parser

S = 1_000_000_000  # ns


def test_a_command_is_timed_to_the_first_block_that_used_it():
    run = SessionRun(started_ns=10 * S)
    run.commands = [(10 * S, 0, {"yaw": 1.0}), (11 * S, 1, {"yaw": 2.0}), (12 * S, 2, {"yaw": 3.0}), (13 * S, 3, {"yaw": 4.0})]
    # block 0 used command 1; block 1 still command 1 (command 2 came while block 1 was made); block 2
    # used command 2, block 3 command 3; command 4 came too late for any block
    run.blocks = [(0, 9, 10 * S + S // 2, 10 * S, 0, 0.4), (1, 12, 11 * S, 10 * S, 0, 0.5),
                  (2, 12, 11 * S + S // 2, 11 * S, 0, 0.5), (3, 12, 12 * S + S // 4, 12 * S, 0, 0.5)]  # fmt: skip
    commands = run.latencies()
    assert [(c["block"], c["latency_s"], c["echoed"]) for c in commands] == [
        (0, 0.5, True), (2, 0.5, True), (3, 0.25, True), (None, None, False)]  # fmt: skip
    summary = run.summary()
    assert summary["first_block_s"] == 0.5 and summary["frames"] == 45 and summary["unused_commands"] == 1
    assert summary["fps"] == pytest.approx(36 / 1.75, abs=0.01)  # frames after the first block over their span
    assert summary["latency_s"] == {"p50": 0.25, "p90": 0.5, "max": 0.5, "count": 2}  # steering: the first is the start


def test_a_block_that_echoes_a_later_command_used_the_earlier_one_too():
    run = SessionRun(started_ns=0)
    run.commands = [(1 * S, 0, {}), (2 * S, 0, {})]  # both before the block: appended in order, both used by it
    run.blocks = [(0, 9, 3 * S, 2 * S, 0, 1.0)]
    assert [(c["block"], c["latency_s"], c["echoed"]) for c in run.latencies()] == [(0, 2.0, False), (0, 1.0, True)]


def test_percentiles_by_nearest_rank():
    assert percentiles([0.3, 0.1, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]) == {"p50": 0.5, "p90": 0.9, "max": 1.0, "count": 10}
    assert percentiles([]) == {"p50": None, "p90": None, "max": None, "count": 0}


def test_the_cli_options(tmp_path):
    args = build_parser().parse_args(["bench", "session", "--weights", str(tmp_path), "--session-blocks", "8",
                                      "--max-sessions", "3", "--frames", "25"])  # fmt: skip
    config = session_bench_config(args)
    assert (config.blocks, config.max_sessions, config.frames, config.warmup_blocks, config.target_fps) == (8, 3, 25, 4, 24.0)
    assert (config.autoencoder, config.backpressure) == ("taehv", "latest")
    with pytest.raises(SystemExit, match="at least 2"):
        SessionBenchConfig(tmp_path, blocks=1).check()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bench_session_refuses_without_cuda(tmp_path, capsys):
    from inspatio_world.cli import main

    assert main(["bench", "session", "--weights", str(tmp_path)]) == 2
    assert "CUDA" in capsys.readouterr().err
