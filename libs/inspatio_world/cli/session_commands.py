"""`inspatio session VIDEO`: a live session from the command line.

With `--viewer GATEWAY` (HOST:PORT of `inspatio gateway`), the session opens in the web viewer: the
command prints the page's address for a video in the store and opens a browser on it. Otherwise the
session is steered by keys: `--moves forward,forward,yaw+` sends one move per block (the first at once, the next after each
block arrives, then `close`), or, without `--moves`, each line read from stdin is one or more keys
(sent as they are typed; an empty stdin or `close` ends the session). Each block prints one line
(generation, index, frames, latency) and, with `--out DIR`, writes its frames there as JPEGs.

Only argument parsing happens at import; gRPC and the SDK load inside the command.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from .job_commands import _client, _coordinator_option, _fail, _one_line_errors

# key -> (CameraMove field, sign); translations take --step, rotations --turn
KEYS = {
    "forward": ("forward", 1), "back": ("forward", -1), "right": ("right", 1), "left": ("right", -1),
    "up": ("up", 1), "down": ("up", -1), "yaw+": ("yaw", 1), "yaw-": ("yaw", -1),
    "pitch+": ("pitch", 1), "pitch-": ("pitch", -1), "orbit+": ("orbit", 1), "orbit-": ("orbit", -1),
}  # fmt: skip
ROTATIONS = ("yaw", "pitch", "orbit")


def add_session_commands(commands: argparse._SubParsersAction) -> None:
    session = commands.add_parser("session", help="steer the camera live over a video, block by block")
    session.add_argument("video", help="a local video file (uploaded), or s3://bucket/key of one in the store")
    session.add_argument("--moves", help=f"comma-separated keys, one per block, then close: {', '.join(KEYS)} "
                                         "(default: keys read from stdin lines as they come)")  # fmt: skip
    session.add_argument("--out", help="folder to write each block's frames into as JPEG (g<generation>_b<block>_f<frame>.jpg)")
    session.add_argument("--step", type=float, default=0.1, help="metres per block of a forward/back/left/right/up/down key (default 0.1)")
    session.add_argument("--turn", type=float, default=5.0, help="degrees per block of a yaw/pitch/orbit key (default 5)")
    session.add_argument("--viewer", metavar="GATEWAY",
                         help="open the session in the web viewer of `inspatio gateway` at HOST:PORT (VIDEO: s3://... in the store)")
    session.add_argument("--prompt", help="replaces the Florence-2 caption")
    session.add_argument("--seed", type=int, default=0)
    session.add_argument("--autoencoder", choices=("taehv", "wan_vae"), default="taehv")
    session.add_argument("--time-policy", choices=("bounce", "freeze"), default="bounce")
    session.add_argument("--backpressure", choices=("latest", "wait"), default="latest")
    session.add_argument("--jpeg-quality", type=int, default=85)
    _coordinator_option(session)
    session.set_defaults(func=cmd_session)


def key_move(key: str, step: float, turn: float) -> dict[str, float]:
    """The `Session.move` arguments of one key; ValueError naming the known keys."""
    if key not in KEYS:
        raise ValueError(f"unknown key {key!r}; known: {', '.join(KEYS)}")
    field, sign = KEYS[key]
    return {field: sign * (turn if field in ROTATIONS else step)}


def _keys(text: str) -> list[str]:
    return [key for key in text.replace(",", " ").split() if key]


@_one_line_errors
def cmd_session(args: argparse.Namespace) -> int:
    if not args.video.startswith("s3://") and not Path(args.video).is_file():
        raise _fail(f"{args.video}: no such video file")
    try:
        moves = None if args.moves is None else [key_move(k, args.step, args.turn) for k in _keys(args.moves)]
    except ValueError as exc:
        raise _fail(f"--moves: {exc}") from exc
    if args.viewer:
        return _with_viewer(args)
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    with _client(args) as client:
        session = client.session(args.video, prompt=args.prompt, seed=args.seed, autoencoder=args.autoencoder,
                                 time_policy=args.time_policy, backpressure=args.backpressure, jpeg_quality=args.jpeg_quality)  # fmt: skip
        with session:
            ready = session.ready
            if ready is not None:
                print(f"session {ready.session_id}: {ready.width}x{ready.height}, {ready.source_frames} source frames, "
                      f"at most {ready.max_blocks} blocks; caption: {ready.caption}", flush=True)  # fmt: skip
            if moves is None:
                threading.Thread(target=_keys_from_stdin, args=(session, args), name="stdin-keys", daemon=True).start()
            elif moves:
                session.move(**moves[0])
            else:
                session.close()
            for seen, block in enumerate(session, start=1):
                _show(block, out)
                if moves is not None and seen < len(moves):
                    session.move(**moves[seen])
                elif moves is not None and seen == len(moves):
                    session.close()
        if session.ended is not None:
            print(f"ended: {session.ended.reason} after {session.ended.blocks} blocks", flush=True)
    return 0


def _show(block, out: Path | None) -> None:
    latency = "-" if block.latency_s is None else f"{block.latency_s:.3f} s"
    print(f"generation {block.generation} block {block.index}: {len(block.jpeg)} frames from frame {block.first_frame}, "
          f"{block.seconds:.3f} s to make, latency {latency}"
          + (f", {block.dropped_before} dropped before" if block.dropped_before else ""), flush=True)  # fmt: skip
    if out is not None:
        for k, jpeg in enumerate(block.jpeg):
            (out / f"g{block.generation}_b{block.index:04d}_f{k:03d}.jpg").write_bytes(jpeg)


def _keys_from_stdin(session, args: argparse.Namespace) -> None:
    """Each stdin line: keys sent as moves at once; `pause`, `resume`, `reset` as themselves;
    `close` or the end of stdin closes the session."""
    try:
        for line in sys.stdin:
            for key in _keys(line):
                if key == "close":
                    session.close()
                    return
                if key in ("pause", "resume", "reset"):
                    getattr(session, key)()
                    continue
                try:
                    session.move(**key_move(key, args.step, args.turn))
                except ValueError as exc:
                    print(f"error: {exc}", file=sys.stderr, flush=True)
        session.close()
    except RuntimeError:  # the session ended meanwhile
        pass


def _with_viewer(args: argparse.Namespace) -> int:
    """Print the viewer page's address for the video and open a browser on it. The token is never put in
    the address here (it would land in the terminal and in the browser's command line): the page asks."""
    import webbrowser

    from ..gateway import viewer_url

    if "://" not in args.video:
        raise _fail(f"--viewer: {args.video} is a local file; the viewer plays videos in the store: give its "
                    "s3://bucket/key (e.g. the video of an earlier job, `inspatio get JOB`), or choose the file "
                    "on the viewer page")  # fmt: skip
    url = viewer_url(args.viewer, args.video)
    print(f"viewer: {url}", flush=True)
    if not webbrowser.open(url):
        print("no browser to open here: open the address above (enter your token on the page if the coordinator needs one)")
    return 0
