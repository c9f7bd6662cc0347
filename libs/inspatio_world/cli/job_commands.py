"""The job commands of `inspatio`: up, run, submit, watch, get, cancel, list.

Only argument parsing happens at import; gRPC, the SDK, torch and the stack load inside the commands.
Everything a command can check locally (video files, trajectory, weights, ports) is checked before
any service starts, and each problem is one readable line, not a traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .. import envvars

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
DEFAULT_COORDINATOR = "127.0.0.1:50051"


def add_job_commands(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser("up", help="start the local stack (four services, local store) until Ctrl-C")
    _stack_options(up)
    up.add_argument("--model-version", choices=["v1", "v1_5"], default="v1",
                    help="the release the stack's generator serves (README 'Model versions'; default v1)")
    up.set_defaults(func=cmd_up)

    run = commands.add_parser("run", help="re-render a video (or every video in a folder) along a camera path")
    run.add_argument("video", nargs="?", help="a video file or a folder of videos")
    run.add_argument("--sample", action="store_true", help="use the project's own sample clip instead of VIDEO")
    run.add_argument("--out", default="outputs",
                     help="output folder: one sub-folder per job, VIDEO-TRAJECTORY-DIGEST (default outputs)")
    run.add_argument("--preview", action="store_true",
                     help="also write preview.mp4 in the job's folder, growing block by block while the job runs")
    run.add_argument("--coordinator", help="address of a running coordinator (default: start a local stack)")
    _security_options(run)
    _job_options(run)
    _stack_options(run)
    run.set_defaults(func=cmd_run)

    submit = commands.add_parser("submit", help="submit a job to a coordinator and print its id")
    submit.add_argument("video", nargs="?", help="a local video file, or s3://bucket/key of one in the store")
    submit.add_argument("--image", action="append", dest="images", metavar="PICTURE",
                        help="instead of a video (model_version v1_5): a picture (file or s3://bucket/key); give it once "
                             "for one picture, four times for four views of one place")
    submit.add_argument("--geometry", metavar="FILE",
                        help="with --image: the pictures' own depth, intrinsics and w2c instead of DA3's (a safetensors "
                             "file with depth [V,H,W], intrinsics and w2c; README 'Image jobs')")
    _job_options(submit)
    _coordinator_option(submit)
    submit.set_defaults(func=cmd_submit)

    for name, helptext, func in (("watch", "follow a job's progress until it ends", cmd_watch),
                                 ("get", "print a job's state as JSON", cmd_get),
                                 ("cancel", "cancel a job and wait until it has stopped", cmd_cancel)):  # fmt: skip
        command = commands.add_parser(name, help=helptext)
        command.add_argument("job_id")
        _coordinator_option(command)
        command.set_defaults(func=func)
    listing = commands.add_parser("list", help="list recent jobs")
    listing.add_argument("--limit", type=int, default=20)
    _coordinator_option(listing)
    listing.set_defaults(func=cmd_list)


def _coordinator_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--coordinator", default=DEFAULT_COORDINATOR, help=f"coordinator address (default {DEFAULT_COORDINATOR})")
    _security_options(parser)


def _security_options(parser: argparse.ArgumentParser) -> None:
    """How to reach a coordinator: each flag replaces its variable (README "TLS")."""
    group = parser.add_argument_group("coordinator connection (TLS: default on for a non-loopback address)")
    group.add_argument("--token", default=None,
                       help=f"bearer token (default ${envvars.TOKEN.name}); visible to other users in `ps`: "
                            f"prefer --token-file or ${envvars.TOKEN_FILE.name}")  # fmt: skip
    group.add_argument("--token-file", default=None, help=f"file holding the bearer token (default ${envvars.TOKEN_FILE.name})")
    add_coordinator_tls_options(group)


def add_coordinator_tls_options(group) -> None:
    """--tls-ca, --tls-client-cert, --tls-client-key, --tls-server-name: each replaces its variable."""
    for flag, var, helptext in (
        ("--tls-ca", envvars.TLS_CA, "PEM CA bundle that verifies the coordinator (default: gRPC's roots)"),
        ("--tls-client-cert", envvars.TLS_CLIENT_CERT, "PEM client certificate, for mutual TLS"),
        ("--tls-client-key", envvars.TLS_CLIENT_KEY, "PEM private key of --tls-client-cert"),
        ("--tls-server-name", envvars.TLS_SERVER_NAME, "name to verify in the coordinator's certificate, if not the address's"),
    ):  # fmt: skip
        group.add_argument(flag, default=None, help=f"{helptext}; or set ${var.name}")


def _stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=None,
                        help=f"store URL (default ${envvars.STORE.name}, else store/ in ${envvars.CACHE_DIR.name}, ~/.cache/inspatio)")
    parser.add_argument("--weights", default=None, help=f"weights folder (default ${envvars.WEIGHTS.name}, else tiny random weights)")
    parser.add_argument("--log-dir", default=None, help=f"service logs (default logs/ in ${envvars.CACHE_DIR.name})")
    # upstream's per-model paths: each replaces one path of the weights folder's layout
    for flag, var in (("--dit-checkpoint", envvars.DIT_CHECKPOINT), ("--da3-dir", envvars.DA3_DIR),
                      ("--florence-dir", envvars.FLORENCE_DIR), ("--taehv-checkpoint", envvars.TAEHV_CHECKPOINT)):  # fmt: skip
        parser.add_argument(flag, default=None, help=f"{var.help.rstrip('.')}; or set ${var.name}")


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--traj", default="x_y_circle_cycle.txt",
                        help="trajectory file, or the name of one shipped in traj/ (default x_y_circle_cycle.txt)")
    parser.add_argument("--relative-to-source", action="store_true", help="apply the path in the moving source camera's frame")
    parser.add_argument("--rotation-only", action="store_true", help="turn the cameras without moving them")
    parser.add_argument("--no-adaptive-frames", action="store_true", help="keep the video's own length (no bounce/subsample)")
    parser.add_argument("--freeze-repeat", type=int, default=0, help="time-freeze: repeat one frame this many extra times")
    parser.add_argument("--freeze-frame", type=int, default=None, help="the frame to freeze (default: the middle one)")
    parser.add_argument("--autoencoder", choices=["wan_vae", "taehv"], default="wan_vae", help="latent encoder/decoder")
    parser.add_argument("--prompt", default=None, help="text prompt replacing the caption")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--force", action="store_true", help="recompute every stage even when cached")
    parser.add_argument("--render-only", action="store_true",
                        help="stop after the render (upstream's --skip_step3): render, mask and source videos, no generation")
    parser.add_argument("--model-version", choices=["v1", "v1_5"], default="v1",
                        help="v1 (default) or v1_5: InSpatio-World v1.5's checkpoint and conditioning (needs --prompt; "
                             "README 'Model versions'); `run` starts its stack with a generator of this version")


def _one_line_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A server's refusal (bad input, unknown job, ...) is an answer for the user, not a traceback."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        import grpc

        try:
            return command(args)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {_refusal(exc)}", file=sys.stderr)
            return 1

    return run


def _refusal(exc) -> str:
    """A refusal's message, after the request fields it names and with the wait it asks for."""
    from ..client import error_details

    details = error_details(exc)
    fields = ", ".join(details.fields)
    text = f"{fields}: {exc.details()}" if fields else f"{exc.details()}"
    return text if details.retry_delay_s is None else f"{text} (retry in {details.retry_delay_s:g} s)"


def _fail(message: str) -> SystemExit:
    return SystemExit(f"error: {message}")


def _request(args: argparse.Namespace):
    """The job's options, with the trajectory read and checked here: a missing file or a bad line is
    reported before any stack starts or video uploads."""
    from ..client import JobOptions
    from ..geometry.trajectory import TrajectoryError

    try:
        options = JobOptions.for_trajectory(
            args.traj, relative_to_source=args.relative_to_source, rotation_only=args.rotation_only,
            adaptive_frames=not args.no_adaptive_frames, freeze_repeat=args.freeze_repeat,
            freeze_frame=args.freeze_frame, autoencoder=args.autoencoder, prompt=args.prompt, seed=args.seed,
            force=args.force, render_only=args.render_only, model_version=args.model_version,
        )  # fmt: skip
        options.validate()
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from exc
    except (TrajectoryError, ValueError) as exc:
        raise _fail(f"{args.traj}: {exc}" if args.traj not in str(exc) else str(exc)) from exc
    return options


def _weights(args: argparse.Namespace):
    """The weights folder (with any per-model paths), checked for every stage's files before a service starts."""
    from ..models.checkpoints import CheckpointError
    from ..pipeline.local_job import RANDOM_WEIGHTS_BANNER, tiny_weights_dir
    from ..pipeline.tiny_weights import write_tiny_weights
    from ..pipeline.weights import WeightsFolder, override_env

    folder = args.weights or envvars.get(envvars.WEIGHTS)
    # a flag is its variable: set here (as an absolute path), it reaches the services with the environment
    flags = override_env(**{name: getattr(args, name) for name in ("dit_checkpoint", "da3_dir", "florence_dir", "taehv_checkpoint")})
    os.environ.update(flags)
    if not folder and not flags:
        print(RANDOM_WEIGHTS_BANNER, flush=True)
        return write_tiny_weights(tiny_weights_dir())
    weights = WeightsFolder.from_env(Path(folder or ".").expanduser().resolve())
    try:
        weights.check(getattr(args, "autoencoder", "wan_vae"))  # `up` serves any job: the Wan VAE at least
        weights.check_depth()
        weights.check_caption()
    except CheckpointError as exc:
        raise _fail(f"{exc}. Set --weights (or ${envvars.WEIGHTS.name}) to a folder laid out as README 'Weights' shows, "
                    "or leave both unset for tiny random weights") from exc  # fmt: skip
    return weights


@contextmanager
def local_stack(args: argparse.Namespace, default_ports: bool) -> Iterator:
    from ..stack import LocalStack, PortBusy, ServiceFailed

    weights = _weights(args)
    log_dir = Path(args.log_dir).resolve() if args.log_dir else envvars.cache_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    store = args.store or envvars.store_url()
    print(f"starting the local stack (plaintext gRPC on 127.0.0.1 only; store {store}, logs in {log_dir}) ...", flush=True)
    try:
        # Supervised: a service that dies is restarted, and said so here (stack.py, supervisor.py).
        stack = LocalStack(store, weights.root, default_ports=default_ports, log_dir=log_dir, supervise=True,
                           report=lambda message: print(message, flush=True), model_version=args.model_version).start()  # fmt: skip
    except (PortBusy, ServiceFailed, TimeoutError) as exc:
        raise _fail(str(exc)) from exc
    try:
        for name, address in stack.addresses.items():
            print(f"  {name:12s} {address}   metrics http://{stack.metrics_addresses[name]}/metrics   "
                  f"pid {stack.processes[name].pid}", flush=True)  # fmt: skip
        yield stack
    finally:
        stack.stop()


def cmd_up(args: argparse.Namespace) -> int:
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    with local_stack(args, default_ports=True) as stack:
        print(f"ready: submit jobs to {stack.addresses['coordinator']} (Ctrl-C stops everything)", flush=True)
        while not stopped.wait(0.5):
            if stack.failure is not None:
                print("stopping: a service could not be kept running (see above)", flush=True)
                return 1
        print("stopping ...", flush=True)
    return 0


def _videos(args: argparse.Namespace) -> list[Path]:
    if args.sample:
        return [_sample_clip()]
    if not args.video:
        raise _fail("give a video file or folder, or --sample")
    path = Path(args.video)
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise _fail(f"{path}: no videos ({', '.join(VIDEO_SUFFIXES)})")
        return videos
    if not path.is_file():
        raise _fail(f"{path}: no such file or folder")
    return [path]


def _sample_clip() -> Path:
    from ..client import write_sample_video

    path = envvars.cache_dir() / "sample" / "street.mp4"
    if not path.is_file():  # written aside, then renamed: an interrupted run leaves no half clip
        write_sample_video(path.with_suffix(".part.mp4")).replace(path)
    return path


def _trajectory_label(traj: str) -> str:
    return Path(traj).stem.removesuffix("_traj") or "trajectory"


def _planned(videos: list[Path], options, label: str) -> tuple[list[Path], int]:
    """The videos that can run, after telling what frame count each will give; bad ones are reported."""
    from ..media.decode import VideoError
    from .frame_notice import TooShort, frame_notice

    runnable, failed = [], 0
    for video in videos:
        try:
            print(frame_notice(video, options, label), flush=True)
            runnable.append(video)
        except (VideoError, TooShort) as exc:
            print(f"{video}: skipped: {exc}", file=sys.stderr, flush=True)
            failed += 1
    return runnable, failed


def _run_jobs(client, videos: list[Path], options, out: Path, label: str, preview: bool) -> int:
    from .job_outputs import JobOutputs, job_folder_name

    submitted, failed = [], 0
    for video in videos:  # all first, so the coordinator can work on them together
        try:
            submitted.append((video, client.submit(video, options)))
        except Exception as exc:  # one bad video must not stop the others
            print(f"{video}: not submitted: {_describe(exc)}", file=sys.stderr, flush=True)
            failed += 1
    for video, job in submitted:
        folder = out / job_folder_name(video.name, label, job)
        outputs = JobOutputs(client, video.name, folder, preview)
        final = client.wait(job.job_id, on_event=outputs.on_event)
        if not outputs.finish(final):
            failed += 1
    if failed:
        print(f"{failed} of {len(videos)} video(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _describe(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return f"{code().name}: {exc.details()}" if callable(code) else str(exc)


@_one_line_errors
def cmd_run(args: argparse.Namespace) -> int:
    from ..client import Client

    options, label = _request(args), _trajectory_label(args.traj)
    videos, failed = _planned(_videos(args), options, label)
    if not videos:
        return 1
    out = Path(args.out)
    if args.coordinator:
        with _client(args) as client:
            status = _run_jobs(client, videos, options, out, label, args.preview)
    else:
        # the local stack is plaintext on loopback, whatever TLS settings the environment holds
        with local_stack(args, default_ports=False) as stack, Client(stack.addresses["coordinator"], tls=False) as client:
            status = _run_jobs(client, videos, options, out, label, args.preview)
    return 1 if failed else status


def _client(args: argparse.Namespace):
    """A client of args.coordinator, with the connection flags (over their variables), checked to answer."""
    from ..client import Client
    from ..rpc.channels import ClientTLS
    from ..rpc.tokens import client_token
    from ..stack import health

    address = args.coordinator
    try:
        tls = ClientTLS.from_env(args.tls_ca, args.tls_client_cert, args.tls_client_key, args.tls_server_name)
        token = client_token(args.token, args.token_file)
        client = Client(address, token=token, tls=tls)  # reads the PEM files: a bad one is reported here
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    if health(address, tls=tls) == "UNREACHABLE":
        client.close()
        if tls.uses_tls(address):
            raise _fail(f"no coordinator answers at {address} over {tls.describe(address)}: is it serving TLS, does "
                        f"--tls-ca (${envvars.TLS_CA.name}) hold the CA that signed its certificate, and does the certificate "
                        f"name the address (else --tls-server-name)?")  # fmt: skip
        raise _fail(f"no coordinator answers at {address} (start one with `inspatio up`)")
    return client


@_one_line_errors
def cmd_submit(args: argparse.Namespace) -> int:
    options = _request(args)
    if (args.video is None) == (not args.images):
        raise _fail("give a video, or pictures with --image (once, or four times), not both")
    if args.geometry and not args.images:
        raise _fail("--geometry goes with --image pictures")
    sources = [(args.video, "video")] if args.video else [(image, "image") for image in args.images]
    for source, what in sources + ([(args.geometry, "geometry")] if args.geometry else []):
        if not source.startswith("s3://") and not Path(source).is_file():
            raise _fail(f"{source}: no such {what} file")
    with _client(args) as client:
        job = client.submit(args.video, options) if args.video else client.submit_images(args.images, options, geometry=args.geometry)
        print(job.job_id)
    return 0


@_one_line_errors
def cmd_watch(args: argparse.Namespace) -> int:
    from .progress import JobProgress

    with _client(args) as client:
        progress = JobProgress(args.job_id)
        final = client.wait(args.job_id, on_event=progress.on_event)
        progress.close(final)
    return 0 if final.state == "succeeded" else 1


@_one_line_errors
def cmd_get(args: argparse.Namespace) -> int:
    import json

    with _client(args) as client:
        print(json.dumps(client.get(args.job_id).to_dict(), indent=2))
    return 0


@_one_line_errors
def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        final = client.cancel(args.job_id, wait=True)
    print(final.state if final.state != "succeeded" else "succeeded (it had finished before the cancel)")
    return 0


@_one_line_errors
def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        for status in client.list(args.limit):
            print(f"{status.job_id}  {status.state:10s} blocks {status.blocks_done}/{status.blocks_total}  {status.caption[:60]}")
    return 0

