"""The local stack a stack-level benchmark runs on (`inspatio bench stack`, `inspatio bench session`):
inputs checked first, a work folder (store, logs, compile cache), the input video (or the sample
clip), the services' environment (GPU placement, the caption cap of random weights), start-up timed
per service, and each service's GPU memory.

A benchmark's config is a `StackSettings` with fields of its own (StackBenchConfig, SessionBenchConfig).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .gpu_monitor import gpu_names, process_memory_mib

CONDITIONING_SERVICES = ("caption", "depthrender")
RANDOM_WEIGHTS_CAPTION_TOKENS = 128


@dataclass(frozen=True)
class StackSettings:
    """What every stack-level benchmark sets: weights, input video, GPU placement, work folder."""

    weights: Path
    video: Path | None = None  # None: the sample clip at frames x height x width (needs PyAV)
    frames: int = 81
    height: int = 480
    width: int = 832
    conditioning_gpu: str | None = None  # CUDA_VISIBLE_DEVICES of caption and depthrender
    generator_gpu: str | None = None  # CUDA_VISIBLE_DEVICES of the generator
    work_dir: Path | None = None  # store, logs, compile cache (None: a temporary folder)
    start_timeout_s: float = 1800.0  # real weights: reading ~31 GiB and building every model
    # Random weights never write Florence-2's end token, so a caption runs to upstream's 1024 tokens;
    # a real detailed caption is ~100. None: 128 on random weights, upstream's 1024 on real ones.
    caption_max_new_tokens: int | None = None


def settings_from_args(args, command: str) -> dict[str, Any]:
    """StackSettings' fields from the `inspatio bench` options (SystemExit without --weights)."""
    if not args.weights:
        raise SystemExit(f"inspatio bench {command} needs --weights DIR (e.g. written by `inspatio weights random-full DIR`)")
    return dict(weights=Path(args.weights).expanduser().resolve(), video=Path(args.video).resolve() if args.video else None,
                frames=args.frames, height=args.height, width=args.width, conditioning_gpu=args.conditioning_gpu,
                generator_gpu=args.generator_gpu, work_dir=Path(args.work_dir).resolve() if args.work_dir else None,
                caption_max_new_tokens=args.caption_max_new_tokens)  # fmt: skip


def check_inputs(config: StackSettings, autoencoders: tuple[str, ...] = ("wan_vae", "taehv")) -> None:
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
        for autoencoder in autoencoders:
            weights.check(autoencoder)
        weights.check_depth()
        weights.check_caption()
    except CheckpointError as exc:
        raise SystemExit(f"{exc} (write a full random folder with `inspatio weights random-full DIR`)") from exc
    if config.video is not None and not config.video.is_file():
        raise SystemExit(f"{config.video}: no such video file")


def caption_tokens(config: StackSettings, random_weights: bool) -> int | None:
    """The caption length cap the bench runs with (None: the service's own setting)."""
    if config.caption_max_new_tokens is not None:
        return config.caption_max_new_tokens
    return RANDOM_WEIGHTS_CAPTION_TOKENS if random_weights else None


def service_env(config: StackSettings, caption_max_new_tokens: int | None = None) -> dict[str, dict[str, str]]:
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


def service_memory(stack, peaks: dict[int, float]) -> dict[str, float | None]:
    """GPU MiB of each service (its peak while sampled, else now); None where nvidia-smi does not list
    its pid (no GPU use, or a container whose pids nvidia-smi cannot see)."""
    now = process_memory_mib()
    return {name: peaks.get(process.pid, now.get(process.pid)) for name, process in stack.processes.items()}


@dataclass(frozen=True)
class Workspace:
    config: StackSettings
    work: Path
    video: Path
    random_weights: bool
    caption_cap: int | None  # INSPATIO_CAPTION_MAX_NEW_TOKENS of the caption service (None: its own)

    def header(self) -> dict:
        """The report's opening: GPUs, config, weights, caption cap, video, GPU placement."""
        config = self.config
        return {
            "gpu": gpu_names(), "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
            "random_weights": self.random_weights, "caption_max_new_tokens": self.caption_cap, "video": str(self.video),
            "placement": {"caption": config.conditioning_gpu, "depthrender": config.conditioning_gpu,
                          "generator": config.generator_gpu},  # None: the caller's CUDA_VISIBLE_DEVICES
        }  # fmt: skip

    def new_stack(self, more_env: dict[str, dict[str, str]] | None = None):
        """A LocalStack (not started) on the workspace's store, logs and compile cache (fresh the first
        time: the first start is cold); `more_env`: per service, more variables."""
        from ..stack import LocalStack

        cache = str(self.work / "compile-cache")
        env = service_env(self.config, self.caption_cap)
        for name, values in (more_env or {}).items():
            env[name] = {**env.get(name, {}), **values}
        return LocalStack((self.work / "store").as_uri(), self.config.weights, default_ports=False, log_dir=self.work / "logs",
                          extra_env={"INSPATIO_COMPILE_CACHE": cache, "TORCHINDUCTOR_CACHE_DIR": cache},
                          service_env=env)  # fmt: skip


@contextmanager
def bench_workspace(config: StackSettings, autoencoders: tuple[str, ...] = ("wan_vae", "taehv")) -> Iterator[Workspace]:
    """Inputs checked, then the work folder (`config.work_dir`, else a temporary one removed after)."""
    from ..client.sample_video import write_sample_video
    from ..pipeline.weights import WeightsFolder

    check_inputs(config, autoencoders)
    with tempfile.TemporaryDirectory(prefix="inspatio-bench-") as temporary:
        work = config.work_dir or Path(temporary)
        (work / "logs").mkdir(parents=True, exist_ok=True)
        video = config.video or write_sample_video(work / "bench.mp4", config.frames, config.height, config.width)
        random_weights = WeightsFolder(config.weights).is_random
        yield Workspace(config, work, video, random_weights, caption_tokens(config, random_weights))
