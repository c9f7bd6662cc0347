"""The model commands of `inspatio`: parity, generate, bench, weights. They run the library in process
and import no gRPC, store or service code (except `bench stack` and `bench session`, which start the
services)."""

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
    bench.add_argument("target", choices=["generator", "conditioning", "stack", "session", "attention"],
                       help="generator: DiT, autoencoders, step 3; conditioning: DA3 depth/poses and the render; "
                            "attention: the self-attention kernels alone (SDPA, flash, FP8) at the model's two shapes; "
                            "stack: the four services on a weights folder, jobs through the SDK; "
                            "session: live sessions on the four services (command latency, fps, sessions per GPU)")
    bench.add_argument("--frames", type=int, default=81, help="pixel frames of the benchmark video (default 81)")
    bench.add_argument("--blocks", type=int, default=6, help="steady-state blocks to time (default 6)")
    bench.add_argument("--warmup-blocks", type=int,
                       help="untimed blocks first (default 2; session: blocks of the warm-up session, default 4)")
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
    bench.add_argument("--sequence-parallel", type=int, default=1, metavar="N",
                       help="generator: spread each DiT pass over N GPUs of this host (sequence-parallel attention; default 1)")
    bench.add_argument("--fp8-attention", action="store_true",
                       help="FP8 self-attention in the DiT (INSPATIO_ATTENTION=fp8; Triton, sm89+); also reports its error against bf16")
    bench.add_argument("--compile-autoencoders", type=_compile_modes, default=(), metavar="MODES",
                       help="generator: also time the Wan VAE's and TAEHV's per-chunk steps torch.compiled in each of these "
                            "comma-separated modes (default, max-autotune-no-cudagraphs; TAEHV also channels-last), "
                            "against eager: section autoencoders_compiled")
    bench.add_argument("--json-out", help="also write the JSON report to this file")
    bench.set_defaults(func=_bench)
    add_bench_stack_options(bench)
    add_bench_session_options(bench)

    weights = commands.add_parser("weights", help="write random weights in the released layout (tiny or real shapes)")
    weights.add_argument("profile", choices=["random-full", "tiny"],
                         help="random-full: every model at its real shape (about 31 GiB); tiny: small models (MBs)")
    weights.add_argument("dir", help="folder to write (kept when already complete)")
    weights.add_argument("--device", default=None,
                         help="where models are built and initialised (default: cuda when available, else cpu; "
                              "random-full on a CPU takes tens of minutes)")
    weights.add_argument("--model-version", action="append", choices=["v1", "v1_5"], dest="model_versions",
                         help="whose InSpatio-World DiT checkpoint to write (repeatable; default: v1 for random-full, "
                              "both for tiny); v1_5 writes InSpatio-World-1.3B/InSpatio-World-1.5-1.3B.safetensors")
    weights.set_defaults(func=_weights)


def add_bench_stack_options(bench: argparse.ArgumentParser) -> None:
    """Options of `inspatio bench stack` (the other targets ignore them)."""
    group = bench.add_argument_group("bench stack")
    group.add_argument("--weights", help="stack: weights folder (e.g. written by `inspatio weights random-full DIR`)")
    group.add_argument("--video", help="stack: input video (default: a generated sample clip; needs PyAV)")
    group.add_argument("--height", type=int, default=480, help="stack: sample video height (default 480)")
    group.add_argument("--width", type=int, default=832, help="stack: sample video width (default 832)")
    group.add_argument("--trajectory", help="stack: trajectory of the timed jobs (default x_y_circle_cycle.txt)")
    group.add_argument("--other-trajectory",
                       help="stack: trajectory of the job on the same video (caption and depth cached; default orbit_left.txt)")
    group.add_argument("--concurrent", type=int, default=4, help="stack: jobs submitted at once in the throughput run (default 4)")
    group.add_argument("--second-start", action="store_true",
                       help="stack: stop and start the services again, timing start-up with the compile cache warm")
    group.add_argument("--conditioning-gpu", help="stack: CUDA_VISIBLE_DEVICES of caption and depthrender (default: the caller's)")
    group.add_argument("--generator-gpu", help="stack: CUDA_VISIBLE_DEVICES of the generator (default: the caller's)")
    group.add_argument("--work-dir", help="stack: folder for the store, logs and outputs (default: a temporary one)")
    group.add_argument("--adaptive-frames", action="store_true",
                       help="stack: upstream's adaptive frame count (>= 121 output frames) instead of one output frame per input frame")
    group.add_argument("--caption-max-new-tokens", type=int,
                       help="stack: caption length cap (default: 128 on random weights, which never end a caption; none on real ones)")
    group.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)  # CI smoke test on tiny weights


def add_bench_session_options(bench: argparse.ArgumentParser) -> None:
    """Options of `inspatio bench session` (it also takes the stack options: --weights, --video,
    --frames, --height, --width, --work-dir, the GPU placement, --caption-max-new-tokens)."""
    group = bench.add_argument_group("bench session")
    group.add_argument("--session-blocks", type=int, default=16,
                       help="session: blocks of each measured session (default 16; the first has 9 frames, then 12)")
    group.add_argument("--max-sessions", type=int, default=4,
                       help="session: most sessions at once tried (default 4; it stops earlier at the first N below --target-fps)")
    group.add_argument("--target-fps", type=float, default=24.0, help="session: per-session frames/s to sustain (default 24)")
    group.add_argument("--autoencoder", choices=["taehv", "wan_vae"], default="taehv", help="session: autoencoder (default taehv)")
    group.add_argument("--backpressure", choices=["latest", "wait"], default="latest", help="session: backpressure (default latest)")


def _compile_modes(text: str) -> tuple[str, ...]:
    from ..models.autoencoder_compile import MODES

    modes = tuple(mode.strip() for mode in text.split(",") if mode.strip())
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of {', '.join(MODES)}")
    return modes


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

    if not torch.cuda.is_available() and not (args.target in ("stack", "session") and args.allow_cpu):
        print("error: the benchmarks time real-size models and need a CUDA GPU; none is visible", file=sys.stderr)
        return 2
    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    # the report so far is written after each measurement: a run cut short keeps what it measured
    partial = (lambda report: Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")) if args.json_out else (lambda _: None)
    if args.target == "stack":
        from ..bench.stack import run_stack_bench, stack_bench_config

        return _print_report(run_stack_bench(stack_bench_config(args), progress, partial), args.json_out)
    if args.target == "session":
        from ..bench.session import run_session_bench, session_bench_config

        return _print_report(run_session_bench(session_bench_config(args), progress, partial), args.json_out)
    if args.target == "attention":
        from ..bench.attention import run_attention_bench

        return _print_report(run_attention_bench(progress), args.json_out)
    if args.target == "conditioning":
        return _print_report(run_conditioning_bench(args.frames, progress), args.json_out)

    config = GeneratorBenchConfig(
        num_frames=args.frames,
        blocks=args.blocks,
        warmup_blocks=args.warmup_blocks if args.warmup_blocks is not None else 2,
        layers=args.layers,
        skip_vae=args.skip_vae,
        profile=args.profile,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        pipeline=args.pipeline,
        fp8=args.fp8,
        sequence_parallel=args.sequence_parallel,
        fp8_attention=args.fp8_attention,
        compile_autoencoders=args.compile_autoencoders,
    )
    return _print_report(run_generator_bench(config, progress=progress), args.json_out)


def _weights(args: argparse.Namespace) -> int:
    progress = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.profile == "tiny":
        from ..pipeline.tiny_weights import TINY
        from ..pipeline.random_weights import write_random_weights

        versions = tuple(args.model_versions or ("v1", "v1_5"))
        write_random_weights(Path(args.dir), TINY, device=args.device or "cpu", progress=progress, model_versions=versions)
    else:
        from ..pipeline.full_weights import write_full_weights

        write_full_weights(Path(args.dir), device=args.device, progress=progress, model_versions=tuple(args.model_versions or ("v1",)))
    print(f"{args.dir}: random weights ({args.profile}); pictures made with them are meaningless")
    return 0


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
