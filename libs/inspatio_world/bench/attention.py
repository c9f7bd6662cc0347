"""`inspatio bench attention`: the DiT self-attention kernels alone at the model's two shapes, as JSON.

Per shape (B=1, 12 heads x 128, bf16; denoise: 4680 queries over 14040 keys, context: 9360 x 9360):
ms per call of SDPA (cuDNN on Hopper), of every installed flash kernel, and of the FP8 kernel
(models/fp8_attention.py) on operands quantized beforehand (`fp8_kernel`) and with its
quantization compiled in front (`fp8_with_quantization`: the upper bound of what the model pays,
where Inductor fuses it into the q/k/v producers instead); the FP8 result's relative L2 distance
from SDPA and the tile configuration its autotuning chose.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .measure import relative_l2

SHAPES = {"denoise": (4680, 14040), "context": (9360, 9360)}
HEADS, HEAD_DIM = 12, 128


def time_ms(fn: Callable[[], object], iters: int = 50) -> float:
    """Mean ms per call on the current stream after a warm-up."""
    for _ in range(5):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def _sdpa(q, k, v):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


def bench_shape(lq: int, lk: int) -> dict:
    from ..models.attention import _flash_attention, _runs_here
    from ..models.fp8_attention import fp8_attention, fp8_attention_quantized, quantize_tokens, quantize_values
    from ..models.fp8_attention_kernel import _fp8_attention_kernel

    g = torch.Generator("cuda").manual_seed(lq + lk)
    q, k, v = (torch.randn(1, n, HEADS, HEAD_DIM, generator=g, device="cuda", dtype=torch.bfloat16) for n in (lq, lk, lk))
    report = {"queries": lq, "keys": lk, "sdpa_ms": round(time_ms(lambda: _sdpa(q, k, v)), 3)}
    for backend in ("flash3", "flash4"):
        if _runs_here(backend):
            report[f"{backend}_ms"] = round(time_ms(lambda: _flash_attention(q, k, v, backend)), 3)
    (q8, qs), (k8, ks), (v8, vs) = quantize_tokens(q), quantize_tokens(k), quantize_values(v)
    report["fp8_kernel_ms"] = round(time_ms(lambda: fp8_attention_quantized(q8, k8, v8, qs, ks, vs, q.dtype)), 3)
    report["fp8_config"] = str(_fp8_attention_kernel.best_config)
    compiled = torch.compile(fp8_attention, fullgraph=True)
    report["fp8_with_quantization_ms"] = round(time_ms(lambda: compiled(q, k, v)), 3)
    report["fp8_vs_sdpa_rel_l2"] = round(relative_l2(compiled(q, k, v), _sdpa(q, k, v)), 5)
    return report


def run_attention_bench(progress: Callable[[str], None] = lambda _: None) -> dict:
    if not torch.cuda.is_available():
        raise SystemExit("inspatio bench attention needs a CUDA GPU (none is visible to torch)")
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    for name, (lq, lk) in SHAPES.items():
        progress(f"attention at {lq} x {lk} ({name}; FP8 autotuning on the first call)")
        report[name] = bench_shape(lq, lk)
    return report
