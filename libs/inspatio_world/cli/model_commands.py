"""The model commands of `inspatio`: parity, generate, bench. They run the library in process and
import no gRPC, store or service code."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    parity = commands.add_parser("parity", help="run every case of a golden parity pack against this implementation")
    parity.add_argument("pack", help="pack folder: one sub-folder per case with case.json and tensors")
    parity.add_argument("--device", default="cpu", help="torch device to run on (default: cpu)")
    parity.add_argument("--case", action="append", help="run only this case (repeatable)")
    parity.set_defaults(func=_parity)

    generate = commands.add_parser("generate", help="run the generator on the built-in sample clip, writing mp4 files")
    generate.add_argument("--out", default="outputs/sample", help="output folder (default outputs/sample)")
    generate.add_argument("--weights", help="weights folder (default: $INSPATIO_WEIGHTS, else tiny random weights)")
    generate.add_argument("--frames", type=int, default=33, help="frames of the sample clip (default 33 = 3 blocks)")
    generate.add_argument("--height", type=int, help="frame height (default 128 tiny / 480 real)")
    generate.add_argument("--width", type=int, help="frame width (default 224 tiny / 832 real)")
    generate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    generate.add_argument("--autoencoder", choices=["wan_vae", "taehv"], default="wan_vae", help="latent encoder/decoder")
    generate.add_argument("--prompt", help="text prompt (default: the clip's own description)")
    generate.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    generate.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                          help="torch.compile the DiT blocks (default: on with CUDA, off on CPU)")
    generate.set_defaults(func=_generate)

    bench = commands.add_parser("bench", help="measure speed on CUDA with random weights at real shapes; prints JSON")
    bench.add_argument("target", choices=["generator", "conditioning"],
                       help="generator: DiT, autoencoders, step 3; conditioning: DA3 depth/poses and the render")
    bench.add_argument("--frames", type=int, default=81, help="pixel frames of the benchmark video (default 81)")
    bench.add_argument("--blocks", type=int, default=6, help="steady-state blocks to time (default 6)")
    bench.add_argument("--warmup-blocks", type=int, default=2, help="untimed blocks first (default 2)")
    bench.add_argument("--layers", type=int, default=30, help="DiT layers (default 30, the real model)")
    bench.add_argument("--skip-vae", action="store_true", help="time the DiT only")
    bench.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                       help="torch.compile the DiT blocks before timing (default on; --no-compile for eager)")
    bench.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
                       help="replay DiT passes from captured CUDA graphs (default on)")
    bench.add_argument("--pipeline", action="store_true",
                       help="also time step 3 end to end (text, encode, generate, decode) for TAEHV and the Wan VAE")
    bench.add_argument("--profile", action="store_true", help="add a per-kernel CUDA time breakdown of one block")
    bench.add_argument("--fp8", action="store_true",
                       help="FP8 linear layers in the DiT blocks (Hopper+); also reports their error against bf16")
    bench.add_argument("--json-out", help="also write the JSON report to this file")
    bench.set_defaults(func=_bench)


def _parity(args: argparse.Namespace) -> int:
    import torch

    from ..parity.harness import run_pack

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
    import torch

    from ..bench.conditioning import run_conditioning_bench
    from ..bench.generator import GeneratorBenchConfig, run_generator_bench

    if not torch.cuda.is_available():
        print("error: the benchmarks time real-size models and need a CUDA GPU; none is visible", file=sys.stderr)
        return 2
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.target == "conditioning":
        return _print_report(run_conditioning_bench(args.frames, progress), args.json_out)

    config = GeneratorBenchConfig(
        num_frames=args.frames,
        blocks=args.blocks,
        warmup_blocks=args.warmup_blocks,
        layers=args.layers,
        skip_vae=args.skip_vae,
        profile=args.profile,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        pipeline=args.pipeline,
        fp8=args.fp8,
    )
    return _print_report(run_generator_bench(config, progress=progress), args.json_out)


def _print_report(report: dict, json_out: str | None) -> int:
    text = json.dumps(report, indent=2)
    print(text)
    if json_out:
        Path(json_out).write_text(text + "\n")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .. import envvars
    from ..pipeline.local_job import SampleJob, run_sample_job

    weights = args.weights or envvars.get(envvars.WEIGHTS) or None
    job = SampleJob(
        out_dir=Path(args.out), weights_dir=Path(weights) if weights else None, frames=args.frames,
        height=args.height, width=args.width, seed=args.seed, autoencoder=args.autoencoder,
        prompt=args.prompt, device=args.device, compile_dit=args.compile,
    )  # fmt: skip
    run_sample_job(job, emit=lambda line: print(line, flush=True))
    return 0
