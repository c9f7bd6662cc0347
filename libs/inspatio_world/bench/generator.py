"""`inspatio bench generator`: the 1.3B generator at real shapes with random weights on CUDA.

Reports, as JSON: ms per steady-state 12-frame block (blocks after the first, which read a
6-frame context), fps, time to the first block with warm models, VAE/TAEHV encode and decode
seconds for the benchmark video, peak GPU memory, attention kernels, RoPE precision, GPU name and
MFU; with --profile the kernel time of one block per part (attention, GEMM, fused elementwise);
for each fast option in use (a flash kernel, float32 RoPE, FP8 linears, FP8 attention) its error per sampled
block against the plain path (SDPA, float64 RoPE, bf16 linears). With --sequence-parallel N the DiT
runs each pass over N GPUs (bench/sequence_parallel.py) and reports its error against one GPU.
Random weights give the same speed as real ones: no step depends on the values.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .. import envvars
from ..models.attention import backends_overridden, resolve_backend, selected_backends
from ..models.checkpoints import build_dit, init_random_
from ..models.dit import DiTConfig
from ..models.sampler import BlockSampler, Conditioning, GeneratorNoise
from ..models.sequence_parallel import SequenceShards
from .measure import relative_l2

LATENT_CHANNELS = 16
SPATIAL = 8  # pixels per latent cell
TEMPORAL = 4  # pixel frames per latent frame (after the first)
FRAMES_PER_BLOCK = 12  # pixel frames per 3-latent block
# Dense bf16 tensor-core peak used for MFU (H100 SXM; H200 has the same compute).
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}


@dataclass(frozen=True)
class GeneratorBenchConfig:
    num_frames: int = 81
    blocks: int = 6
    warmup_blocks: int = 2
    layers: int = 30
    height: int = 480
    width: int = 832
    skip_vae: bool = False
    pipeline: bool = False  # also time step 3 end to end (text encoder, autoencoders, DiT)
    profile: bool = False  # add a per-kernel breakdown of one steady-state block
    compile: bool = True  # regional torch.compile of the DiT blocks (the product's GPU path)
    cuda_graphs: bool = True  # replay each pass shape from a captured CUDA graph
    fp8: bool = False  # FP8 linear layers in the DiT blocks; adds their error against bf16
    sequence_parallel: int = 1  # GPUs (processes) each DiT pass is spread over
    fp8_attention: bool = False  # FP8 self-attention (INSPATIO_ATTENTION=fp8); adds its error against bf16
    compile_autoencoders: tuple[str, ...] = ()  # also time the autoencoders' steps compiled in these modes


def pass_flops(config: DiTConfig, query_tokens: int, key_tokens: int) -> float:
    """Matmul FLOPs (2mnk) of one DiT pass; norms, softmax and RoPE ignored."""
    d, ffn, text = config.dim, config.ffn_dim, config.text_len
    per_token_linear = 2 * (4 * d * d + 2 * d * d + 2 * d * ffn)
    per_layer = (
        query_tokens * per_token_linear
        + 4 * query_tokens * key_tokens * d  # self-attention QK^T and AV
        + 4 * query_tokens * text * d  # cross-attention core
        + 2 * 2 * text * d * d  # cross-attention K/V of the text
    )
    return config.num_layers * per_layer + 2 * text * (config.text_dim * d + d * d)


def steady_block_flops(config: DiTConfig, tokens_per_frame: int, frames_per_block: int = 3, steps: int = 4) -> float:
    block = frames_per_block * tokens_per_frame
    context = pass_flops(config, 2 * block, 2 * block)
    denoise = pass_flops(config, block, 3 * block)
    return context + steps * denoise


def _random_conditioning(config: DiTConfig, frames: int, height: int, width: int, device) -> Conditioning:
    g = torch.Generator(device).manual_seed(0)

    def randn(*shape):
        return torch.randn(shape, generator=g, device=device, dtype=torch.bfloat16)

    return Conditioning(
        prompt_embeds=randn(1, config.text_len, config.text_dim),
        ref_latent=randn(1, frames, LATENT_CHANNELS, height, width),
        render_latent=randn(1, frames, LATENT_CHANNELS, height, width),
        mask_latent=randn(1, frames, 4, height, width).sign(),
    )


def _time_blocks(sampler: BlockSampler, cond: Conditioning, seed: int) -> list[float]:
    """Seconds from the start of generation to each block's completion (synchronized)."""
    noise = GeneratorNoise(torch.Generator(cond.ref_latent.device).manual_seed(seed))
    torch.cuda.synchronize()
    start = time.perf_counter()
    marks = []
    for _ in sampler.blocks(cond, noise):
        torch.cuda.synchronize()
        marks.append(time.perf_counter() - start)
    return marks


def bench_dit(config: GeneratorBenchConfig, progress: Callable[[str], None], shards: SequenceShards | None = None) -> dict:
    """The DiT figures; with `shards`, this rank's of a sequence-parallel run (every rank calls it)."""
    device = torch.device("cuda", torch.cuda.current_device())
    dit_config = DiTConfig(num_layers=config.layers)
    progress(f"building the DiT ({config.layers} layers) with random weights on {torch.cuda.get_device_name()}")
    dit = init_random_(build_dit(dit_config, torch.bfloat16, device))
    dit.use_fused_gelu(envvars.get_flag(envvars.FUSED_GELU))
    dit.use_sequence_parallel(shards)
    h, w = config.height // SPATIAL, config.width // SPATIAL
    option_errors = _option_errors(dit, dit_config, h, w, device, config.fp8)
    if shards is not None:
        option_errors["sequence_parallel_vs_single"] = _sequence_parallel_error(dit, dit_config, h, w, device)
    if config.compile:
        dit.compile_blocks()
    sampler = BlockSampler(dit, cuda_graphs=config.cuda_graphs)

    progress(f"warm-up: {config.warmup_blocks} blocks")
    warmup_s = _time_blocks(sampler, _random_conditioning(dit_config, 3 * config.warmup_blocks, h, w, device), seed=1)[-1]
    progress(f"timing: 1 first block + {config.blocks} steady-state blocks")
    torch.cuda.reset_peak_memory_stats()
    marks = _time_blocks(sampler, _random_conditioning(dit_config, 3 * (config.blocks + 1), h, w, device), seed=2)
    steady = [b - a for a, b in zip(marks, marks[1:])]
    kernels = _profile_block(sampler, dit_config, h, w, device) if config.profile else None
    block_s = sum(steady) / len(steady)
    flops = steady_block_flops(dit_config, (h // 2) * (w // 2))
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in torch.cuda.get_device_name()), None)
    gpus = shards.size if shards is not None else 1  # MFU is per GPU: the block's work is spread over them
    return {
        "sequence_parallel": shards.size if shards is not None else 1,
        "compiled": config.compile,
        "cuda_graphs": config.cuda_graphs,
        "linear_dtype": "float8_e4m3fn" if config.fp8 else "bfloat16",
        "rope_precision": str(dit.rope_table(device).precision).removeprefix("torch."),
        "fused_gelu": dit.blocks[0].fused_gelu,
        **option_errors,
        "warmup_s": round(warmup_s, 2),
        "block_ms": round(1000 * block_s, 2),
        "block_ms_min": round(1000 * min(steady), 2),
        "block_ms_max": round(1000 * max(steady), 2),
        "fps": round(FRAMES_PER_BLOCK / block_s, 2),
        "first_block_s": round(marks[0], 4),
        "block_tflop": round(flops / 1e12, 2),
        "achieved_tflops": round(flops / block_s / 1e12, 1),
        "mfu": round(flops / block_s / (peak * gpus), 3) if peak else None,
        "kv_cache_gib": round(sampler.kv_cache_bytes / 2**30, 3),
        "dit_peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        **({"profile_parts_ms": kernel_parts(kernels), "profile_top_kernels": kernels[:26]} if kernels is not None else {}),
    }


def _sampled_blocks(dit, cond: Conditioning, device) -> list[torch.Tensor]:
    """The two blocks (4 steps each, eager) of a fixed noise seed, in float32."""
    noise = GeneratorNoise(torch.Generator(device).manual_seed(7))
    return [block.float() for block in BlockSampler(dit).blocks(cond, noise)]


def _block_errors(blocks: list[torch.Tensor], reference: list[torch.Tensor]) -> dict:
    return {"block_rel_l2": [round(relative_l2(b, r), 5) for b, r in zip(blocks, reference)]}


def _sequence_parallel_error(dit, dit_config: DiTConfig, h: int, w: int, device) -> dict:
    """Each of two sampled blocks' relative L2 distance between the sequence-parallel run and rank 0's
    GPU alone (same weights, noise and options, eager); every rank calls it, rank 0 gets the figures."""
    cond = _random_conditioning(dit_config, 6, h, w, device)
    shards = dit.shards
    errors = {}
    with torch.no_grad():
        parallel = _sampled_blocks(dit, cond, device)
        if shards.rank == 0:
            dit.use_sequence_parallel(None)
            errors = _block_errors(parallel, _sampled_blocks(dit, cond, device))
            dit.use_sequence_parallel(shards)
    torch.distributed.barrier()  # the other ranks wait here while rank 0 runs alone
    torch.cuda.empty_cache()
    return errors


def _option_errors(dit, dit_config: DiTConfig, h: int, w: int, device, fp8: bool) -> dict:
    """For each fast option in use, the relative L2 distance of each of two sampled blocks (4 steps
    each, eager, same noise) from the plain path on the same weights. FP8 quantizes `dit` in place."""
    cond = _random_conditioning(dit_config, 6, h, w, device)

    def sample() -> list[torch.Tensor]:
        return _sampled_blocks(dit, cond, device)

    def distance(blocks: list[torch.Tensor]) -> dict:
        return _block_errors(blocks, reference)

    chosen, precision = dict(selected_backends()), dit.rope_table(device).precision
    fused_gelu = dit.blocks[0].fused_gelu
    errors = {}
    with torch.no_grad():
        dit.use_rope_precision(torch.float64)
        dit.use_fused_gelu(False)
        with backends_overridden(self="sdpa", cross="sdpa"):
            reference = sample()
        if fused_gelu:
            dit.use_fused_gelu(True)
            with backends_overridden(self="sdpa", cross="sdpa"):
                errors["fused_gelu_vs_separate"] = distance(sample())
            dit.use_fused_gelu(False)
        for kind, backend in chosen.items():
            if backend != "sdpa":
                with backends_overridden(**{kind: backend}, **{other: "sdpa" for other in chosen if other != kind}):
                    name = "fp8_attention_vs_bf16" if backend == "fp8" else f"{kind}_attention_{backend}_vs_sdpa"
                    errors[name] = distance(sample())
        if precision != torch.float64:
            dit.use_rope_precision(precision)
            with backends_overridden(self="sdpa", cross="sdpa"):
                errors["rope_float32_vs_float64"] = distance(sample())
        if fp8:
            dit.use_rope_precision(torch.float64)
            dit.use_fp8_linears()
            with backends_overridden(self="sdpa", cross="sdpa"):
                errors["fp8_vs_bf16"] = distance(sample())
        if errors:
            dit.use_rope_precision(None)
            dit.use_fused_gelu(fused_gelu)
            errors["all_options_vs_plain"] = distance(sample())
    dit.use_rope_precision(None)
    dit.use_fused_gelu(fused_gelu)
    torch.cuda.empty_cache()
    return errors


# Kernel-name fragments of each part of a block (CUDA kernel names as the profiler lists them).
KERNEL_PARTS = (
    ("communication", ("nccl",)),
    ("attention", ("flash", "fmha", "attention", "sdpa", "cudnn")),
    ("gemm", ("gemm", "nvjet", "cutlass", "xmma", "sm90_", "gemv", "matmul")),
    ("fused elementwise (compiled)", ("triton",)),
    ("copies", ("copy", "memcpy", "memset", "cat")),
)


def kernel_parts(kernels: list[dict]) -> dict:
    """Sum the profile rows per part of a block; TOTAL is kept, unmatched kernels go to "other"."""
    parts = {name: 0.0 for name, _ in KERNEL_PARTS} | {"other": 0.0}
    for row in kernels:
        if row["kernel"] == "TOTAL":
            continue
        name = row["kernel"].lower()
        part = next((part for part, fragments in KERNEL_PARTS if any(f in name for f in fragments)), "other")
        parts[part] += row["ms"]
    return {"total": next(row["ms"] for row in kernels if row["kernel"] == "TOTAL")} | {k: round(v, 2) for k, v in parts.items()}


def _profile_block(sampler: BlockSampler, dit_config: DiTConfig, h: int, w: int, device) -> list[dict]:
    """CUDA time per kernel over the second block of a 2-block run (the steady-state shape), largest first."""
    from torch.profiler import ProfilerActivity, profile

    cond = _random_conditioning(dit_config, 6, h, w, device)
    blocks = sampler.blocks(cond, GeneratorNoise(torch.Generator(device).manual_seed(3)))
    next(blocks)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        next(blocks)
        torch.cuda.synchronize()
    events = sorted(prof.key_averages(), key=lambda e: e.device_time_total, reverse=True)
    total = sum(e.device_time_total for e in events)
    rows = [{"kernel": e.key[:90], "calls": e.count, "ms": round(e.device_time_total / 1000, 3)} for e in events if e.device_time_total]
    return [{"kernel": "TOTAL", "calls": 0, "ms": round(total / 1000, 2)}] + rows


def run_generator_bench(config: GeneratorBenchConfig, progress: Callable[[str], None] = lambda _: None) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("inspatio bench generator needs a CUDA GPU (none is visible to torch)")
    torch.backends.cuda.matmul.allow_tf32 = True
    if config.fp8_attention and config.sequence_parallel > 1:
        raise SystemExit("--fp8-attention applies to one process; with --sequence-parallel set INSPATIO_ATTENTION=fp8 instead")
    # FP8 attention for the whole run (compiled graphs fold the choice in); resolving checks it runs here.
    with backends_overridden(self=resolve_backend("fp8")) if config.fp8_attention else nullcontext():
        return _run(config, progress)


def _run(config: GeneratorBenchConfig, progress: Callable[[str], None]) -> dict:
    if config.sequence_parallel > 1:
        from .sequence_parallel import bench_dit_sequence_parallel

        dit = bench_dit_sequence_parallel(config, progress)
    else:
        dit = bench_dit(config, progress)
    report = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "attention_backends": dict(selected_backends()),
        "dtype": "bfloat16",
        "config": asdict(config),
        "dit": dit,
    }
    torch.cuda.empty_cache()
    if not config.skip_vae:
        from .autoencoders import bench_autoencoders

        report["autoencoders"] = bench_autoencoders(config.num_frames, config.height, config.width, progress, config.compile_autoencoders)
        if "compiled" in report["autoencoders"]:
            report["autoencoders_compiled"] = report["autoencoders"].pop("compiled")
    if config.pipeline:
        from .pipeline import bench_pipeline

        torch.cuda.empty_cache()
        report["pipeline"] = bench_pipeline(config.num_frames, config.height, config.width, config.compile, config.cuda_graphs,
                                            progress, fp8=config.fp8)  # fmt: skip
    stages = [report["dit"]] + [v for part in ("autoencoders", "pipeline") for v in report.get(part, {}).values() if isinstance(v, dict)]
    stage_peaks = [stage.get("peak_gpu_gib", stage.get("dit_peak_gpu_gib", 0.0)) for stage in stages]
    report["peak_gpu_gib"] = max(stage_peaks)  # stages run one after another, so the largest stage bounds it
    return report
