"""`inspatio bench stack`: the four services (LocalStack) on a weights folder, driven through the SDK.

Measures, as JSON: each service's seconds from process start to SERVING (cold: fresh store and
compile cache; optionally a second start with the compile cache warm); per autoencoder, the first
job after the start (cold: compiling, capturing CUDA graphs) and then, on warm services, an input
video's job (every stage forced) from submit returned (upload done) to the first block event and
to done, with the job's stage timings; the same video along another trajectory (caption and depth
cached); N jobs submitted at once (output frames/s, GPU utilisation); GPU memory of each service.
With `random-full` weights (`inspatio weights random-full DIR`) every cost is the real one.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .gpu_monitor import GPUMonitor
from .local_stack import StackSettings, bench_workspace, service_memory, settings_from_args, start_timed

TRAJECTORY = "x_y_circle_cycle.txt"
OTHER_TRAJECTORY = "orbit_left.txt"


@dataclass(frozen=True)
class StackBenchConfig(StackSettings):
    concurrent: int = 4
    trajectory: str = TRAJECTORY  # a shipped name or a file
    other_trajectory: str = OTHER_TRAJECTORY
    second_start: bool = False
    # False: one output frame per input frame (81 in, 81 out); True: upstream's adaptive frame count
    # (bounce to >= 121 frames, or more for a fast trajectory).
    adaptive_frames: bool = False


def stack_bench_config(args: argparse.Namespace) -> StackBenchConfig:
    return StackBenchConfig(
        **settings_from_args(args, "stack"), concurrent=args.concurrent, second_start=args.second_start,
        trajectory=args.trajectory or TRAJECTORY, other_trajectory=args.other_trajectory or OTHER_TRAJECTORY,
        adaptive_frames=args.adaptive_frames,
    )  # fmt: skip


def run_job(client, video: Path, options) -> dict:
    """One job: seconds from submit returned to the first block event and to done; stage timings."""
    job = client.submit(video, options, timeout=600)
    submitted = time.monotonic()
    arrivals: list[float] = []  # seconds from submit to each block event
    frames = 0

    def on_event(event) -> None:
        nonlocal frames
        if event.kind == "block":
            arrivals.append(round(time.monotonic() - submitted, 3))
            frames += event.frames

    status = client.wait(job.job_id, on_event=on_event)
    if status.state != "succeeded":
        raise RuntimeError(f"job {job.job_id} ({options.autoencoder}) ended {status.state}: {status.error}")
    return {"first_block_s": arrivals[0] if arrivals else None, "done_s": round(time.monotonic() - submitted, 3),
            "output_frames": frames, "blocks": status.blocks_total, "block_arrivals_s": arrivals,
            "stages": {stage: {"seconds": round(s, 3), "cache_hit": hit} for stage, (s, hit) in status.timings.items()}}  # fmt: skip


def run_concurrent(client, video: Path, options_list: list) -> dict:
    """Jobs submitted at once (one thread each); output frames per second of wall time."""
    with GPUMonitor() as monitor, ThreadPoolExecutor(len(options_list)) as pool:
        started = time.monotonic()
        results = list(pool.map(lambda options: run_job(client, video, options), options_list))
        wall = time.monotonic() - started
    frames = sum(r["output_frames"] for r in results)
    return {"jobs": len(results), "wall_s": round(wall, 2), "output_frames": frames, "fps": round(frames / wall, 2),
            "first_block_s": [r["first_block_s"] for r in results], "gpus": monitor.summary(),
            "process_peak_mib": monitor.process_peak_mib}  # fmt: skip


def run_stack_bench(config: StackBenchConfig, progress: Callable[[str], None] = lambda _: None,
                    partial: Callable[[dict], None] = lambda _: None) -> dict:  # fmt: skip
    """The report; `partial` receives it after each measurement (a run cut short keeps what it measured)."""
    from ..client import Client
    from ..jobs.options import JobOptions

    with bench_workspace(config) as workspace:
        work, video = workspace.work, workspace.video
        report = workspace.header()
        new_stack = workspace.new_stack

        progress(f"starting the four services on {config.weights} (logs in {work / 'logs'}) ...")
        stack = new_stack()
        report["start_to_serving_s"] = {"cold": start_timed(stack, config.start_timeout_s)}
        progress(f"serving: {report['start_to_serving_s']['cold']}")
        try:
            report["service_gpu_mib_after_start"] = service_memory(stack, {})  # models loaded, nothing run yet
            partial(report)
            with Client(stack.addresses["coordinator"], timeout=600) as client:

                def options(trajectory: str, **fields):
                    return JobOptions.for_trajectory(trajectory, adaptive_frames=config.adaptive_frames, **fields)

                for label in ("cold_jobs", "jobs"):  # the first job of each autoencoder compiles and captures
                    report[label] = {}
                    for autoencoder in ("taehv", "wan_vae"):  # every stage forced: each job pays the full cost
                        progress(f"job ({label}): {autoencoder}, all stages")
                        report[label][autoencoder] = run_job(client, video, options(config.trajectory, autoencoder=autoencoder, force=True))
                        partial(report)
                progress("job: another trajectory (caption and depth cached)")
                report["other_trajectory"] = run_job(client, video, options(config.other_trajectory, autoencoder="taehv"))
                partial(report)
                progress(f"{config.concurrent} jobs at once")
                at_once = [options(config.trajectory, seed=100 + i, autoencoder="taehv") for i in range(config.concurrent)]
                report["concurrent"] = run_concurrent(client, video, at_once)
                report["service_gpu_mib"] = service_memory(stack, report["concurrent"].pop("process_peak_mib"))
                partial(report)
        finally:
            stack.stop()
        if config.second_start:
            progress("second start (compile cache warm)")
            stack = new_stack()
            report["start_to_serving_s"]["warm_compile_cache"] = start_timed(stack, config.start_timeout_s)
            try:
                with Client(stack.addresses["coordinator"], timeout=600) as client:
                    report["after_second_start"] = run_job(client, video, JobOptions.for_trajectory(
                        config.trajectory, adaptive_frames=config.adaptive_frames, autoencoder="taehv", force=True))  # fmt: skip
                    partial(report)
            finally:
                stack.stop()
    return report
