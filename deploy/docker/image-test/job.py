"""The host side of `make image-test`: what runs outside the containers, through the project's own code.

    job.py prepare DIR          tiny random weights in DIR/weights, a short clip in DIR/clip.mp4
    job.py wait ADDRESS...      until every service reports SERVING (fails after --timeout seconds)
    job.py run ADDRESS DIR      a job through the SDK against the coordinator; its outputs must decode
    job.py ports N              N distinct free ports on 127.0.0.1
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

from inspatio_world.client import Client, JobOptions, write_sample_video
from inspatio_world.media.decode import read_frames
from inspatio_world.pipeline.tiny_weights import write_tiny_weights
from inspatio_world.stack import health

FRAMES, HEIGHT, WIDTH = 9, 64, 96  # one block of 3 latents: the tests' tiny job, seconds on a CPU


def prepare(folder: Path) -> None:
    weights = write_tiny_weights(folder / "weights")
    clip = write_sample_video(folder / "clip.mp4", FRAMES, HEIGHT, WIDTH)
    print(f"tiny weights: {weights.root}\nclip: {clip} ({FRAMES} frames, {WIDTH}x{HEIGHT})")


def wait(addresses: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = set(addresses)
    while waiting:
        waiting = {address for address in waiting if health(address) != "SERVING"}
        if waiting and time.monotonic() > deadline:
            sys.exit(f"not SERVING after {timeout:.0f} s: {sorted(waiting)}")
        time.sleep(0.5)
    print(f"SERVING: {' '.join(addresses)}")


def run(address: str, folder: Path, timeout: float) -> None:
    start = time.monotonic()
    with Client(address) as client:
        options = JobOptions(trajectory_name="x_y_circle_cycle.txt", adaptive_frames=False)
        job = client.submit(folder / "clip.mp4", options)
        final = client.wait(job.job_id, on_event=lambda e: print(f"  event {e.kind} {e.stage or (e.block_index if e.kind == 'block' else '')}"), timeout=timeout)
        if final.state != "succeeded":
            sys.exit(f"job {final.job_id}: {final.state}: {final.error}")
        outputs = client.download(final, folder / "outputs")
    print(f"job {final.job_id}: {final.state} in {time.monotonic() - start:.1f} s")
    for name, path in sorted(outputs.items()):
        if path.suffix == ".mp4":
            frames = read_frames(path)  # decodes every frame, or raises
            print(f"  {path.name}: {tuple(frames.shape)} frames decoded ({path.stat().st_size} bytes)")
            if frames.shape[0] != FRAMES:
                sys.exit(f"{path.name}: {frames.shape[0]} frames, expected {FRAMES}")
        else:
            print(f"  {path.name}: {path.stat().st_size} bytes")


def ports(count: int) -> None:
    """All bound at once, then released: distinct, unlike N separate free_port() calls."""
    probes = [socket.socket() for _ in range(count)]
    for probe in probes:
        probe.bind(("127.0.0.1", 0))
    print(*(probe.getsockname()[1] for probe in probes))
    for probe in probes:
        probe.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["prepare", "wait", "run", "ports"])
    parser.add_argument("args", nargs="+")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(Path(args.args[0]))
    elif args.command == "ports":
        ports(int(args.args[0]))
    elif args.command == "wait":
        wait(args.args, args.timeout)
    else:
        run(args.args[0], Path(args.args[1]), args.timeout)


if __name__ == "__main__":
    main()
