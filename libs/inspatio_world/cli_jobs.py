"""The job commands of `inspatio`: up, run, submit, watch, get, cancel, list."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from . import envvars
from .client import Client, JobOptions, JobStatus
from .media.video_io import write_mp4
from .pipeline.local_job import RANDOM_WEIGHTS_BANNER, TINY_WEIGHTS_DIR
from .pipeline.sample_clip import make_sample_clip
from .pipeline.tiny_weights import write_tiny_weights
from .pipeline.weights import WeightsFolder
from .stack import LocalStack, health

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
SAMPLE_CLIP = Path(".cache/sample/street.mp4")
DEFAULT_STORE = "file://" + str(Path(".cache/store").resolve())


def add_job_commands(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="start the local stack (four services, local store) until Ctrl-C")
    _stack_options(up)
    up.set_defaults(func=cmd_up)

    run = commands.add_parser("run", help="re-render a video (or every video in a folder) along a camera path")
    run.add_argument("video", nargs="?", help="a video file or a folder of videos")
    run.add_argument("--sample", action="store_true", help="use the project's own sample clip instead of VIDEO")
    run.add_argument("--out", default="outputs", help="output folder: one sub-folder per video (default outputs)")
    run.add_argument("--coordinator", help="address of a running coordinator (default: start a local stack)")
    _job_options(run)
    _stack_options(run)
    run.set_defaults(func=cmd_run)

    submit = commands.add_parser("submit", help="submit a job to a coordinator and print its id")
    submit.add_argument("video", help="a local video file, or s3://bucket/key of one in the store")
    _job_options(submit)
    _coordinator_option(submit)
    submit.set_defaults(func=cmd_submit)

    for name, helptext, func in (("watch", "follow a job's progress until it ends", cmd_watch),
                                 ("get", "print a job's state as JSON", cmd_get),
                                 ("cancel", "cancel a job", cmd_cancel)):  # fmt: skip
        command = commands.add_parser(name, help=helptext)
        command.add_argument("job_id")
        _coordinator_option(command)
        command.set_defaults(func=func)
    listing = commands.add_parser("list", help="list recent jobs")
    listing.add_argument("--limit", type=int, default=20)
    _coordinator_option(listing)
    listing.set_defaults(func=cmd_list)


def _coordinator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", default="127.0.0.1:50051", help="coordinator address (default 127.0.0.1:50051)")


def _stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None, help=f"store URL (default ${envvars.STORE.name}, else .cache/store)")
    parser.add_argument("--weights", default=None, help=f"weights folder (default ${envvars.WEIGHTS.name}, else tiny random weights)")
    parser.add_argument("--log-dir", default=".cache/logs", help="service logs (default .cache/logs)")


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traj", default="x_y_circle_cycle.txt", help="trajectory file, or the name of one in traj/ (default x_y_circle_cycle.txt)")
    parser.add_argument("--relative-to-source", action="store_true", help="apply the path in the moving source camera's frame")
    parser.add_argument("--rotation-only", action="store_true", help="turn the cameras without moving them")
    parser.add_argument("--no-adaptive-frames", action="store_true", help="keep the video's own length (no bounce/subsample)")
    parser.add_argument("--freeze-repeat", type=int, default=0, help="time-freeze: repeat one frame this many extra times")
    parser.add_argument("--freeze-frame", type=int, default=None, help="the frame to freeze (default: the middle one)")
    parser.add_argument("--autoencoder", choices=["wan_vae", "taehv"], default="wan_vae", help="latent encoder/decoder")
    parser.add_argument("--prompt", default=None, help="text prompt replacing the caption")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--force", action="store_true", help="recompute every stage even when cached")


def _request(args: argparse.Namespace) -> JobOptions:
    """The job's options; a trajectory file is checked here, so that its errors name the file and
    come before any stack starts or video uploads."""
    from .geometry.trajectory import TrajectoryError, parse_trajectory

    options = JobOptions.for_trajectory(
        args.traj, relative_to_source=args.relative_to_source, rotation_only=args.rotation_only,
        adaptive_frames=not args.no_adaptive_frames, freeze_repeat=args.freeze_repeat, freeze_frame=args.freeze_frame,
        autoencoder=args.autoencoder, prompt=args.prompt, seed=args.seed, force=args.force,
    )  # fmt: skip
    if options.trajectory_text:  # read from a local file
        try:
            parse_trajectory(options.trajectory_text, source=args.traj)
        except TrajectoryError as exc:
            raise SystemExit(f"error: {exc}") from exc
    return options


def _weights(args: argparse.Namespace) -> WeightsFolder:
    folder = args.weights or envvars.get(envvars.WEIGHTS)
    if folder:
        return WeightsFolder(Path(folder))
    print(RANDOM_WEIGHTS_BANNER, flush=True)
    return write_tiny_weights(TINY_WEIGHTS_DIR.resolve())


@contextmanager
def local_stack(args: argparse.Namespace, default_ports: bool) -> Iterator[LocalStack]:
    weights = _weights(args)
    log_dir = Path(args.log_dir).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    store = args.store or envvars.get(envvars.STORE)
    store = DEFAULT_STORE if store == envvars.STORE.default else store
    print(f"starting the local stack (store {store}, logs in {log_dir}) ...", flush=True)
    with LocalStack(store, weights.root, default_ports=default_ports, log_dir=log_dir) as stack:
        for name, address in stack.addresses.items():
            print(f"  {name:12s} {address}   metrics http://{stack.metrics_addresses[name]}/metrics", flush=True)
        yield stack


def cmd_up(args: argparse.Namespace) -> int:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with local_stack(args, default_ports=True) as stack:
        print(f"ready: submit jobs to {stack.addresses['coordinator']} (Ctrl-C stops everything)", flush=True)
        stopped.wait()
        print("stopping ...", flush=True)
    return 0


def _videos(args: argparse.Namespace) -> list[Path]:
    if args.sample:
        SAMPLE_CLIP.parent.mkdir(parents=True, exist_ok=True)
        clip = make_sample_clip(49, 240, 416)
        write_mp4(SAMPLE_CLIP, [clip.source * 0.5 + 0.5], 416, 240)
        return [SAMPLE_CLIP]
    if not args.video:
        raise SystemExit("give a video file or folder, or --sample")
    path = Path(args.video)
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise SystemExit(f"{path}: no videos ({', '.join(VIDEO_SUFFIXES)})")
        return videos
    if not path.is_file():
        raise SystemExit(f"{path}: no such file or folder")
    return [path]


def _run_jobs(client: Client, videos: list[Path], request: JobOptions, out: Path) -> int:
    from tqdm import tqdm

    jobs = [(video, client.submit(video, request)) for video in videos]
    failures = 0
    for position, (video, job) in enumerate(jobs):
        bar = tqdm(total=1, desc=f"{video.name} [queued]", unit="block", position=position, leave=True)

        def show(event, bar=bar, name=video.name) -> None:
            if event.kind == "stage_started":
                bar.set_description(f"{name} [{event.stage}]")
            elif event.kind == "block":
                bar.total = event.blocks
                bar.n = event.block_index + 1
                bar.refresh()

        final = client.wait(job.job_id, on_event=show)
        cached = final.state == "succeeded" and final.timings and all(hit for _, hit in final.timings.values())
        bar.set_description(f"{video.name} [{final.state}{', every stage from the cache' if cached else ''}]")
        if final.state == "succeeded":  # a cached generation streams no blocks: show it complete
            bar.n = bar.total
        bar.close()
        if final.state != "succeeded":
            failures += 1
            print(f"{video}: {final.state} {final.error}", file=sys.stderr)
            continue
        written = client.download(final, out / video.stem)
        print(f"{video}: {', '.join(str(p) for p in written.values())}")
    return 1 if failures else 0


def cmd_run(args: argparse.Namespace) -> int:
    videos, request, out = _videos(args), _request(args), Path(args.out)
    if args.coordinator:
        with Client(args.coordinator) as client:
            return _run_jobs(client, videos, request, out)
    with local_stack(args, default_ports=False) as stack, Client(stack.addresses["coordinator"]) as client:
        return _run_jobs(client, videos, request, out)


def _client(args: argparse.Namespace) -> Client:
    if health(args.coordinator) == "UNREACHABLE":
        raise SystemExit(f"no coordinator answers at {args.coordinator} (start one with `inspatio up`)")
    return Client(args.coordinator)


def _print_status(status: JobStatus) -> None:
    data = asdict(status)
    data["outputs"] = {name: {"key": ref.key, "url": ref.url} for name, ref in status.outputs.items()}
    print(json.dumps(data, indent=2))


def cmd_submit(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.submit(args.video, _request(args)).job_id)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for event in client.watch(args.job_id):
            if event.kind == "finished":
                print(f"finished: {event.status.state} {event.status.error}".rstrip())
                return 0 if event.status.state == "succeeded" else 1
            detail = f"block {event.block_index + 1}/{event.blocks}" if event.kind == "block" else event.stage
            suffix = f" ({event.seconds:.2f} s{', cached' if event.cache_hit else ''})" if event.kind != "stage_started" else ""
            print(f"{event.kind}: {detail}{suffix}", flush=True)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_status(client.get(args.job_id))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.cancel(args.job_id).state)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for status in client.list(args.limit):
            print(f"{status.job_id}  {status.state:10s} blocks {status.blocks_done}/{status.blocks_total}  {status.caption[:60]}")
    return 0
