"""`inspatio bench session` end to end on CPU: tiny weights, a 13-frame 64x96 clip, the four services as
processes on 127.0.0.1, sessions through the SDK. Checks the report's shape and that its numbers are
measurements: positive times and rates, each command timed to a block made after it was sent (the
first command to block 0, which waits for it) whose echo names that very command, and N growing to
the cap (the target is set low enough for CPU). Real figures need the H200 (README Performance)."""

from __future__ import annotations

import json

import pytest

from inspatio_world.bench.session import SessionBenchConfig, run_session_bench

SERVICES = {"caption", "depthrender", "generator", "coordinator"}
BLOCKS = 4  # moves sent after blocks 0-2: at least one is used before the session ends


def test_bench_session_reports_latency_fps_and_sessions_at_once(tmp_path, tiny_weights):
    pytest.importorskip("av")
    config = SessionBenchConfig(tiny_weights.root, frames=13, height=64, width=96, blocks=BLOCKS, warmup_blocks=1, max_sessions=2,
                                target_fps=0.01, work_dir=tmp_path / "work", start_timeout_s=300)  # fmt: skip
    partials: list[dict] = []
    report = json.loads(json.dumps(run_session_bench(config, partial=lambda r: partials.append(json.loads(json.dumps(r))))))
    assert set(report["start_to_serving_s"]) == SERVICES and min(report["start_to_serving_s"].values()) > 0
    assert report["random_weights"] is True and isinstance(report["gpu"], list)
    assert report["targets"] == {"command_to_frame_s": 0.5, "fps": 0.01}
    assert report["warmup"]["blocks"] == 1 and report["warmup"]["first_block_s"] > 0
    assert set(report["warmup"]["stages"]) == {"caption", "depth"}

    for label in ("steered", "steered_on_arrival"):  # moves at random moments of a block; as blocks arrive
        steered = report[label]
        assert steered["blocks"] == BLOCKS and steered["ended"] == "max_blocks" and steered["frames"] == 9 + 12 * (BLOCKS - 1)
        assert steered["fps"] > 0 and steered["first_block_s"] > 0 and steered["block_seconds_mean"] > 0
        commands = steered["commands"]
        assert len(commands) == BLOCKS  # the first move, then one per block but the last
        assert len({json.dumps(c["move"], sort_keys=True) for c in commands}) == BLOCKS  # a different move each time
        timed = [c for c in commands if c["latency_s"] is not None]
        assert len(timed) >= 2 and steered["unused_commands"] == len(commands) - len(timed)
        assert commands[0]["block"] == 0 and commands[0]["latency_s"] == steered["first_block_s"]
        for command in timed:
            assert command["latency_s"] > 0 and command["block"] >= command["sent_after_blocks"]  # a block made after it
            assert command["echoed"]  # one move per 12 frames: the block names exactly this command
        latency = steered["latency_s"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["max"] and latency["count"] == len(timed) - 1  # steering only

    concurrent = report["concurrent"]
    assert [r["sessions"] for r in concurrent] == [1, 2] and report["sessions_at_target"] == 2
    for result in concurrent:
        assert len(result["per_session_fps"]) == result["sessions"] and min(result["per_session_fps"]) > 0
        assert result["min_fps"] == min(result["per_session_fps"]) and result["aggregate_fps"] > 0 and result["at_target"]
        assert result["latency_s"]["count"] > 0 and result["ended"] == ["max_blocks"] * result["sessions"]
    assert set(report["service_gpu_mib"]) == SERVICES
    assert [bool(p.get("concurrent")) for p in partials][-1] and "steered" in partials[-1]  # written as it went
