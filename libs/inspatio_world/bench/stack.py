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
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from .gpu_monitor import GPUMonitor, gpu_names, process_memory_mib

TRAJECTORY = "x_y_circle_cycle.txt"
OTHER_TRAJECTORY = "orbit_left.txt"
CONDITIONING_SERVICES = ("caption", "depthrender")


@dataclass(frozen=True)
class StackBenchConfig:
    weights: Path
    video: Path | None = None  # None: the sample clip at frames x height x width (needs PyAV)
    frames: int = 81
    height: int = 480
    width: int = 832
    concurrent: int = 4
    trajectory: str = TRAJECTORY  # a shipped name or a file
    other_trajectory: str = OTHER_TRAJECTORY
    second_start: bool = False
    conditioning_gpu: str | None = None  # CUDA_VISIBLE_DEVICES of caption and depthrender
    generator_gpu: str | None = None  # CUDA_VISIBLE_DEVICES of the generator
    work_dir: Path | None = None  # store, logs, compile cache (None: a temporary folder)
    start_timeout_s: float = 1800.0  # real weights: reading ~31 GiB and building every model
    # False: one output frame per input frame (81 in, 81 out); True: upstream's adaptive frame count
    # (bounce to >= 121 frames, or more for a fast trajectory).
    adaptive_frames: bool = False
    # Random weights never write Florence-2's end token, so a caption runs to upstream's 1024 tokens;
    # a real detailed caption is ~100. None: 128 on random weights, upstream's 1024 on real ones.
    caption_max_new_tokens: int | None = None


def stack_bench_config(args: argparse.Namespace) -> StackBenchConfig:
    if not args.weights:
        raise SystemExit("inspatio bench stack needs --weights DIR (e.g. written by `inspatio weights random-full DIR`)")
    return StackBenchConfig(
        weights=Path(args.weights).expanduser().resolve(), video=Path(args.video).resolve() if args.video else None,
        frames=args.frames, height=args.height, width=args.width, concurrent=args.concurrent, second_start=args.second_start,
        trajectory=args.trajectory or TRAJECTORY, other_trajectory=args.other_trajectory or OTHER_TRAJECTORY,
        conditioning_gpu=args.conditioning_gpu, generator_gpu=args.generator_gpu,
        work_dir=Path(args.work_dir).resolve() if args.work_dir else None, adaptive_frames=args.adaptive_frames,
        caption_max_new_tokens=args.caption_max_new_tokens,
    )  # fmt: skip


def _check_inputs(config: StackBenchConfig) -> None:
    """Cheap failures first: PyAV (the services decode and encode video with it) and the weights."""
    from ..models.checkpoints import CheckpointError
    from ..pipeline.weights import WeightsFolder

    try:
        import av  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"PyAV (`av`) is not installed ({exc}): the services decode and encode video with it, and the "
                         "sample clip is written with it; install it (pip install av)") from exc  # fmt: skip
    weights = WeightsFolder(config.weights)
    try:
        for autoencoder in ("wan_vae", "taehv"):
            weights.check(autoencoder)
        weights.check_depth()
        weights.check_caption()
    except CheckpointError as exc:
        raise SystemExit(f"{exc} (write a full random folder with `inspatio weights random-full DIR`)") from exc
    if config.video is not None and not config.video.is_file():
        raise SystemExit(f"{config.video}: no such video file")


RANDOM_WEIGHTS_CAPTION_TOKENS = 128


def caption_tokens(config: StackBenchConfig, random_weights: bool) -> int | None:
    """The caption length cap the bench runs with (None: the service's own setting)."""
    if config.caption_max_new_tokens is not None:
        return config.caption_max_new_tokens
    return RANDOM_WEIGHTS_CAPTION_TOKENS if random_weights else None


def _service_env(config: StackBenchConfig, caption_max_new_tokens: int | None = None) -> dict[str, dict[str, str]]:
    env: dict[str, dict[str, str]] = {name: {} for name in ("caption", "depthrender", "generator")}
    if config.conditioning_gpu is not None:
        for name in CONDITIONING_SERVICES:
            env[name]["CUDA_VISIBLE_DEVICES"] = config.conditioning_gpu
    if config.generator_gpu is not None:
        env["generator"]["CUDA_VISIBLE_DEVICES"] = config.generator_gpu
    if caption_max_new_tokens is not None:
        env["caption"]["INSPATIO_CAPTION_MAX_NEW_TOKENS"] = str(caption_max_new_tokens)
    return {name: values for name, values in env.items() if values}


def start_timed(stack, timeout: float) -> dict[str, float]:
    """Start `stack`; seconds from each service's process start to its first SERVING answer."""
    from ..stack import health

    failure: list[BaseException] = []

    def start() -> None:
        try:
            stack.start(timeout)
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    starter = threading.Thread(target=start, name="stack-start")
    starter.start()
    ready: dict[str, float] = {}
    while starter.is_alive():
        for name, started in list(stack.started_at.items()):
            if name not in ready and health(stack.addresses[name], timeout=0.5) == "SERVING":
                ready[name] = round(time.monotonic() - started, 2)
        time.sleep(0.2)
    starter.join()
    if failure:
        raise failure[0]
    for name, started in stack.started_at.items():  # served between the last poll and start() returning
        ready.setdefault(name, round(time.monotonic() - started, 2))
    return ready


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


def service_memory(stack, peaks: dict[int, float]) -> dict[str, float | None]:
    """GPU MiB of each service (its peak while sampled, else now); None where nvidia-smi does not list
    its pid (no GPU use, or a container whose pids nvidia-smi cannot see)."""
    now = process_memory_mib()
    return {name: peaks.get(process.pid, now.get(process.pid)) for name, process in stack.processes.items()}


def run_stack_bench(config: StackBenchConfig, progress: Callable[[str], None] = lambda _: None,
                    partial: Callable[[dict], None] = lambda _: None) -> dict:  # fmt: skip
    """The report; `partial` receives it after each measurement (a run cut short keeps what it measured)."""
    from ..client import Client
    from ..client.sample_video import write_sample_video
    from ..jobs.options import JobOptions
    from ..pipeline.weights import WeightsFolder
    from ..stack import LocalStack

    _check_inputs(config)
    with tempfile.TemporaryDirectory(prefix="inspatio-bench-") as temporary:
        work = config.work_dir or Path(temporary)
        (work / "logs").mkdir(parents=True, exist_ok=True)
        video = config.video or write_sample_video(work / "bench.mp4", config.frames, config.height, config.width)
        cache = str(work / "compile-cache")  # fresh: the first start is cold
        random_weights = WeightsFolder(config.weights).is_random
        caption_cap = caption_tokens(config, random_weights)
        report = {
            "gpu": gpu_names(), "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "random_weights": random_weights, "caption_max_new_tokens": caption_cap, "video": str(video),
            "placement": {"caption": config.conditioning_gpu, "depthrender": config.conditioning_gpu,
                          "generator": config.generator_gpu},  # None: the caller's CUDA_VISIBLE_DEVICES
        }  # fmt: skip

        def new_stack():
            return LocalStack((work / "store").as_uri(), config.weights, default_ports=False, log_dir=work / "logs",
                              extra_env={"INSPATIO_COMPILE_CACHE": cache, "TORCHINDUCTOR_CACHE_DIR": cache},
                              service_env=_service_env(config, caption_cap))  # fmt: skip

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
