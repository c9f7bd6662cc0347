"""`inspatio ...` command line: parity checks and benchmarks (services come with later commands)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parity(args: argparse.Namespace) -> int:
    import torch

    from .parity.harness import run_pack

    pack = Path(args.pack)
    if not pack.is_dir():
        print(f"parity pack not found: {pack}", file=sys.stderr)
        return 2
    results = run_pack(pack, torch.device(args.device), only=args.case)
    if not results:
        print(f"no cases (folders with case.json) under {pack}", file=sys.stderr)
        return 2
    return 0 if all(r.passed for r in results) else 1


def _bench(args: argparse.Namespace) -> int:
    from .bench.generator import GeneratorBenchConfig, run_generator_bench

    config = GeneratorBenchConfig(
        num_frames=args.frames,
        blocks=args.blocks,
        warmup_blocks=args.warmup_blocks,
        layers=args.layers,
        skip_vae=args.skip_vae,
    )
    report = run_generator_bench(config, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspatio", description="InSpatio-World: camera-controlled video re-rendering")
    commands = parser.add_subparsers(dest="command", required=True)

    parity = commands.add_parser("parity", help="run every case of a golden parity pack against this implementation")
    parity.add_argument("pack", help="pack folder: one sub-folder per case with case.json and tensors")
    parity.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    parity.add_argument("--case", action="append", help="run only this case (repeatable)")
    parity.set_defaults(func=_parity)

    bench = commands.add_parser("bench", help="measure speed on CUDA with random weights at real shapes; prints JSON")
    bench.add_argument("target", choices=["generator"], help="what to benchmark")
    bench.add_argument("--frames", type=int, default=81, help="pixel frames of the benchmark video (default 81)")
    bench.add_argument("--blocks", type=int, default=6, help="steady-state blocks to time (default 6)")
    bench.add_argument("--warmup-blocks", type=int, default=2, help="untimed blocks first (default 2)")
    bench.add_argument("--layers", type=int, default=30, help="DiT layers (default 30, the real model)")
    bench.add_argument("--skip-vae", action="store_true", help="time the DiT only")
    bench.add_argument("--json-out", help="also write the JSON report to this file")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
