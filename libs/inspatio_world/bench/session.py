"""`inspatio bench session`: live sessions through the SDK on the local stack (issue 14's GPU figures).

On a weights folder (`inspatio weights random-full DIR` for the real costs), the four services start
(bench/local_stack.py) with the generator holding up to `max_sessions` sessions of `blocks` blocks.
A warm-up session runs first (it compiles and captures). Then, as JSON:

* `steered`: one session steered with a different move every block, sent while blocks stream: after
  each block's arrival, at a uniformly random moment of the next block's expected interval (as a
  person's key press falls); `steered_on_arrival`: the same, each move sent as a block arrives (it
  just misses the block already being made: the worst case). Per command: the time from sending it to
  the arrival of the first block that used it (blocks come whole, so its first frame arrives then).
  A block echoes the stamp of the latest command its cameras reflect (SessionBlock.command_sent_unix_ns;
  the SDK's stamps are strictly increasing), so the first block using command c is the first whose
  echo is c's stamp or a later one (client/session.py `reflects`). Commands no block used before the
  session ended are counted, not timed; the first command (block 0 waits for it) is the session's
  start, `first_block_s`, and stays out of the latency percentiles. Sustained fps: frames after the first block over the time
  from the first block's arrival to the last one's.
* `concurrent`: N = 1, 2, ... sessions at once, each steered the same way, all opened first and
  then started together; per N each session's fps, the command latency percentiles over all of them,
  GPU utilisation and memory. It stops after the first N whose slowest session is below `target_fps`,
  or at `max_sessions`; `sessions_at_target` is the largest N whose every session kept `target_fps`.

Progress goes to `progress` (stderr in the CLI); `partial` gets the report after each measurement.
"""

from __future__ import annotations

import argparse
import math
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .gpu_monitor import GPUMonitor
from .local_stack import StackSettings, bench_workspace, service_memory, settings_from_args, start_timed

# a different move every block (metres of the scene's scale, degrees), cycled
MOVES = ({"forward": 0.05, "yaw": 3.0}, {"right": 0.05, "yaw": -3.0}, {"orbit": 5.0}, {"forward": -0.05, "pitch": 2.0},
         {"up": 0.03, "yaw": 2.0}, {"right": -0.05, "pitch": -2.0})  # fmt: skip
TARGET_FPS = 24.0
ARRIVAL, RANDOM = "arrival", "random"  # when a command is sent within a block (see `steer`)
TARGET_LATENCY_S = 0.5


@dataclass(frozen=True)
class SessionBenchConfig(StackSettings):
    blocks: int = 16  # blocks of every measured session (the generator's INSPATIO_SESSION_MAX_BLOCKS)
    warmup_blocks: int = 4  # blocks of the warm-up session (then it is closed)
    max_sessions: int = 4  # the largest N tried (the generator's INSPATIO_MAX_SESSIONS, the tenant's limit)
    target_fps: float = TARGET_FPS
    autoencoder: str = "taehv"
    backpressure: str = "latest"

    def check(self) -> None:
        if self.blocks < 2:
            raise SystemExit("--session-blocks must be at least 2 (fps is measured after the first block)")
        if self.warmup_blocks < 1 or self.max_sessions < 1 or not self.target_fps > 0:
            raise SystemExit("--warmup-blocks and --max-sessions must be at least 1, --target-fps above 0")


def session_bench_config(args: argparse.Namespace) -> SessionBenchConfig:
    return SessionBenchConfig(
        **settings_from_args(args, "session"), blocks=args.session_blocks,
        warmup_blocks=args.warmup_blocks if args.warmup_blocks is not None else SessionBenchConfig.warmup_blocks,
        max_sessions=args.max_sessions, target_fps=args.target_fps, autoencoder=args.autoencoder,
        backpressure=args.backpressure,
    )  # fmt: skip


# --- one session ---------------------------------------------------------------------------------------

@dataclass
class SessionRun:
    """What one steered session measured (client clock, nanoseconds)."""

    started_ns: int = 0  # the first command sent (block 0 starts then)
    blocks: list = field(default_factory=list)  # (index, frames, received_ns, command_sent_ns, dropped_before, seconds)
    commands: list = field(default_factory=list)  # (stamp, blocks received when sent, move)
    ended: str | None = None

    def latencies(self) -> list[dict]:
        """Per command: the first block whose cameras reflect it, and the seconds to its arrival."""
        out = []
        for stamp, received_before, move in self.commands:
            used = next((b for b in self.blocks if b[3] >= stamp), None)
            out.append({"move": move, "sent_after_blocks": received_before, "block": None if used is None else used[0],
                        "latency_s": None if used is None else round((used[2] - stamp) / 1e9, 4),
                        "echoed": used is not None and used[3] == stamp})  # the block names this very command  # fmt: skip
        return out

    def summary(self) -> dict:
        """`latency_s`: over the steering commands (the first command, which block 0 waits for, is
        the session's start: `first_block_s`)."""
        commands = self.latencies()
        timed = steering_latencies(commands)
        later = self.blocks[1:]
        span = (self.blocks[-1][2] - self.blocks[0][2]) / 1e9 if len(self.blocks) > 1 else 0.0
        frames = sum(b[1] for b in later)
        return {
            "blocks": len(self.blocks), "frames": sum(b[1] for b in self.blocks), "ended": self.ended,
            "first_block_s": round((self.blocks[0][2] - self.started_ns) / 1e9, 4) if self.blocks else None,
            "fps": round(frames / span, 2) if span > 0 else None,
            "block_seconds_mean": round(sum(b[5] for b in later) / len(later), 4) if later else None,
            "dropped_blocks": sum(b[4] for b in self.blocks),
            "latency_s": percentiles(timed), "unused_commands": sum(c["block"] is None for c in commands), "commands": commands,
        }  # fmt: skip


def steering_latencies(commands: list[dict]) -> list[float]:
    """The latencies of the commands after the first that a block used."""
    return [c["latency_s"] for c in commands[1:] if c["latency_s"] is not None]


def percentiles(values: list[float]) -> dict:
    """p50 / p90 (nearest rank) / max / count; the numbers None without values."""
    ordered = sorted(values)

    def rank(p: float) -> float | None:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)] if ordered else None

    return {"p50": rank(0.5), "p90": rank(0.9), "max": ordered[-1] if ordered else None, "count": len(ordered)}


def steer(session, blocks: int, run: SessionRun, stop_after: int | None = None, phase: str = RANDOM,
          seed: int = 0) -> SessionRun:  # fmt: skip
    """Send a move, then a different one per block arrived (none after the last block the session
    makes): at its arrival (`phase` ARRIVAL: the command just misses the block being made, the worst
    case), or at a uniformly random moment of the next block's expected interval (RANDOM: a person's
    key press, from a timer thread while this one reads). `stop_after`: close the session after that
    many blocks (the warm-up)."""
    rng = random.Random(seed)
    sending = threading.Lock()  # stamp and queue in one order: attribution relies on it
    timers: list[threading.Timer] = []

    def send() -> None:
        with sending:
            move = MOVES[len(run.commands) % len(MOVES)]
            run.commands.append((session.move(**move), len(run.blocks), move))

    send()
    run.started_ns = run.commands[0][0]
    try:
        for block in session:
            run.blocks.append((block.index, len(block.jpeg), block.received_unix_ns, block.command_sent_unix_ns,
                               block.dropped_before, block.seconds))  # fmt: skip
            if stop_after is not None and len(run.blocks) == stop_after:
                session.close()
            elif stop_after is None and len(run.blocks) < blocks:
                if phase == ARRIVAL:
                    send()
                else:
                    previous = run.blocks[-2][2] if len(run.blocks) > 1 else run.started_ns
                    timers.append(threading.Timer(rng.random() * (block.received_unix_ns - previous) / 1e9, send))
                    timers[-1].start()
    finally:
        for timer in timers:
            timer.cancel()
            timer.join()
    run.ended = session.ended.reason if session.ended else None
    return run


def session_kwargs(config: SessionBenchConfig, seed: int) -> dict:
    return {"seed": seed, "autoencoder": config.autoencoder, "backpressure": config.backpressure}


# --- N at once ----------------------------------------------------------------------------------------

def run_together(address: str, video: Path, config: SessionBenchConfig, n: int) -> list[SessionRun]:
    """`n` sessions, one client each: all opened (ready), then steered from the same moment."""
    from ..client import Client

    together = threading.Barrier(n)
    runs = [SessionRun() for _ in range(n)]
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with Client(address, timeout=600) as client, client.session(video, **session_kwargs(config, 100 + i)) as session:
                together.wait()
                steer(session, config.blocks, runs[i], seed=100 + i)
        except threading.BrokenBarrierError:
            pass  # another session failed to open: its error is reported
        except BaseException as error:  # noqa: BLE001 (re-raised in the caller's thread)
            errors.append(error)
            together.abort()

    threads = [threading.Thread(target=one, args=(i,), name=f"bench-session-{i}") for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return runs


def concurrent_summary(runs: list[SessionRun], target_fps: float) -> dict:
    summaries = [run.summary() for run in runs]
    fps = [s["fps"] for s in summaries]
    latencies = [latency for s in summaries for latency in steering_latencies(s["commands"])]
    start = min(run.blocks[0][2] for run in runs if run.blocks)
    end = max(run.blocks[-1][2] for run in runs if run.blocks)
    frames = sum(sum(b[1] for b in run.blocks[1:]) for run in runs)
    return {
        "sessions": len(runs), "per_session_fps": fps, "min_fps": min(f or 0.0 for f in fps),
        "aggregate_fps": round(frames / ((end - start) / 1e9), 2) if end > start else None,
        "at_target": all(f is not None and f >= target_fps for f in fps), "latency_s": percentiles(latencies),
        "first_block_s": [s["first_block_s"] for s in summaries], "dropped_blocks": sum(s["dropped_blocks"] for s in summaries),
        "unused_commands": sum(s["unused_commands"] for s in summaries), "ended": [s["ended"] for s in summaries],
    }  # fmt: skip


# --- the benchmark -------------------------------------------------------------------------------------

def run_session_bench(config: SessionBenchConfig, progress: Callable[[str], None] = lambda _: None,
                      partial: Callable[[dict], None] = lambda _: None) -> dict:  # fmt: skip
    """The report; `partial` receives it after each measurement (a run cut short keeps what it measured)."""
    from ..client import Client

    config.check()
    with bench_workspace(config, (config.autoencoder,)) as workspace:
        report = workspace.header()
        report["targets"] = {"command_to_frame_s": TARGET_LATENCY_S, "fps": config.target_fps}
        stack = workspace.new_stack({
            "generator": {"INSPATIO_MAX_SESSIONS": str(config.max_sessions), "INSPATIO_SESSION_MAX_BLOCKS": str(config.blocks)},
            # the open mode's tenant; twice: a round's sessions may still hold their places at the
            # coordinator a moment after their `ended` reached the client, as the next round opens
            "coordinator": {"INSPATIO_TENANT_MAX_SESSIONS": str(2 * config.max_sessions)},
        })  # fmt: skip
        progress(f"starting the four services on {config.weights} (logs in {workspace.work / 'logs'}) ...")
        report["start_to_serving_s"] = start_timed(stack, config.start_timeout_s)
        progress(f"serving: {report['start_to_serving_s']}")
        try:
            address = stack.addresses["coordinator"]
            with Client(address, timeout=600) as client:
                progress(f"warm-up session ({config.warmup_blocks} blocks: compiles, captures)")
                warmup_started = time.monotonic()
                with client.session(workspace.video, **session_kwargs(config, 0)) as session:
                    report["warmup"] = {"stages": {s.stage: round(s.seconds, 3) for s in session.stages}}
                    run = steer(session, config.blocks, SessionRun(), stop_after=config.warmup_blocks, phase=ARRIVAL)
                report["warmup"].update(first_block_s=run.summary()["first_block_s"], blocks=len(run.blocks),
                                        seconds=round(time.monotonic() - warmup_started, 2))  # fmt: skip
                partial(report)
                progress(f"warm-up: {report['warmup']}")
                for label, phase in (("steered", RANDOM), ("steered_on_arrival", ARRIVAL)):
                    progress(f"{label}: one session of {config.blocks} blocks, a new move every block ({phase})")
                    with GPUMonitor() as monitor, client.session(workspace.video, **session_kwargs(config, 1)) as session:
                        report[label] = steer(session, config.blocks, SessionRun(), phase=phase, seed=1).summary()
                    report[label]["gpus"] = monitor.summary()
                    partial(report)
                    steered = report[label]
                    progress(f"{label}: {steered['fps']} fps after the first block, command -> first frame {steered['latency_s']}")
            report["concurrent"] = []
            peaks: dict[int, float] = {}
            for n in range(1, config.max_sessions + 1):
                progress(f"{n} session(s) at once ...")
                with GPUMonitor() as monitor:
                    runs = run_together(address, workspace.video, config, n)
                result = concurrent_summary(runs, config.target_fps)
                result["gpus"] = monitor.summary()
                for pid, mib in monitor.process_peak_mib.items():
                    peaks[pid] = max(mib, peaks.get(pid, 0.0))
                report["concurrent"].append(result)
                report["sessions_at_target"] = max((r["sessions"] for r in report["concurrent"] if r["at_target"]), default=0)
                report["service_gpu_mib"] = service_memory(stack, peaks)
                partial(report)
                progress(f"{n} at once: per-session fps {result['per_session_fps']}, latency {result['latency_s']}")
                if not result["at_target"]:
                    break
        finally:
            stack.stop()
    return report
