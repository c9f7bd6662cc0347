"""CUDA only: the compiled DiT path against the plain eager path (bf16, real width, 2 layers).

Compiled blocks keep eager's per-op bf16 rounding (emulate_precision_casts) but reduce in another
order, so single values may move by an ulp; errors are measured relative to the output size.
"""

from __future__ import annotations

import pytest
import torch

from inspatio_world.models.checkpoints import build_dit, init_random_
from inspatio_world.models.dit import DiTConfig
from inspatio_world.models.kv_cache import KVCache
from inspatio_world.models.sampler import BlockSampler, Conditioning, GeneratorNoise

from tests.support.tensors import randn_bf16, relative_error

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CONFIG = DiTConfig(num_layers=2)
DEVICE = "cuda"


@pytest.fixture(scope="module")
def models():
    eager = init_random_(build_dit(CONFIG, torch.bfloat16, DEVICE), seed=4)
    compiled = init_random_(build_dit(CONFIG, torch.bfloat16, DEVICE), seed=4)
    compiled.compile_blocks()
    return eager, compiled


def test_one_denoising_pass(models):
    g = torch.Generator(DEVICE).manual_seed(0)
    text_in, context = randn_bf16(g, 1, 512, 4096), randn_bf16(g, 1, 36, 6, 60, 104)
    noisy, render = randn_bf16(g, 1, 16, 3, 60, 104), randn_bf16(g, 1, 20, 3, 60, 104)
    outputs = []
    for model in models:
        cache = KVCache(CONFIG.num_layers, 1, 9 * 1560, CONFIG.num_heads, CONFIG.head_dim, torch.bfloat16, DEVICE)
        text = model.embed_text(text_in)
        model(context, torch.zeros(1, dtype=torch.long, device=DEVICE), text, cache=cache, cache_mode="write")
        t = torch.tensor([937.5], device=DEVICE)
        outputs.append(model(noisy, t, text, render=render, cache=cache, cache_mode="read", cache_length=6 * 1560, time_offset=6))
    error = relative_error(outputs[1], outputs[0])
    print(f"compiled vs eager, one pass: relative L2 error {error:.2e}")
    assert error < 5e-3


def test_two_blocks_of_sampling(models):
    g = torch.Generator(DEVICE).manual_seed(1)
    cond = Conditioning(randn_bf16(g, 1, 512, 4096), randn_bf16(g, 1, 6, 16, 60, 104), randn_bf16(g, 1, 6, 16, 60, 104), randn_bf16(g, 1, 6, 4, 60, 104).sign())
    outputs = [BlockSampler(m).generate(cond, GeneratorNoise(torch.Generator(DEVICE).manual_seed(2))) for m in models]
    error = relative_error(outputs[1], outputs[0])
    print(f"compiled vs eager, 2 blocks x 4 steps: relative L2 error {error:.2e}")
    assert error < 1e-2


def test_cuda_graph_replay_is_identical_to_direct_calls(models):
    eager = models[0]
    g = torch.Generator(DEVICE).manual_seed(3)
    cond = Conditioning(randn_bf16(g, 1, 512, 4096), randn_bf16(g, 1, 9, 16, 60, 104), randn_bf16(g, 1, 9, 16, 60, 104), randn_bf16(g, 1, 9, 4, 60, 104).sign())
    direct = BlockSampler(eager).generate(cond, GeneratorNoise(torch.Generator(DEVICE).manual_seed(5)))
    graphed_sampler = BlockSampler(eager, cuda_graphs=True)
    for _ in range(2):  # the second run replays the graphs captured by the first
        graphed = graphed_sampler.generate(cond, GeneratorNoise(torch.Generator(DEVICE).manual_seed(5)))
        assert torch.equal(graphed, direct)
