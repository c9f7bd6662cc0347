"""CUDA only: FP8 linear layers in the DiT (bf16 everywhere else, real width, 2 layers).

The compiled FP8 path must compute what the eager FP8 path does (the fused quantization is the
same arithmetic), and FP8 must stay near bf16: its error is the option's documented cost.
"""

from __future__ import annotations

import pytest
import torch

from inspatio_world.models.checkpoints import build_dit, init_random_
from inspatio_world.models.dit import DiTConfig
from inspatio_world.models.fp8_linear import fp8_supported
from inspatio_world.models.sampler import BlockSampler, Conditioning, GeneratorNoise

from tests.support.tensors import randn_bf16, relative_error

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or not fp8_supported(torch.device("cuda")), reason="needs a CUDA GPU with FP8 (sm89+)"
)

CONFIG = DiTConfig(num_layers=2)
DEVICE = "cuda"


def _model(fp8: bool, compiled: bool):
    model = init_random_(build_dit(CONFIG, torch.bfloat16, DEVICE), seed=4)
    if fp8:
        model.use_fp8_linears()
    if compiled:
        model.compile_blocks()
    return model


@pytest.fixture(scope="module")
def conditioning():
    g = torch.Generator(DEVICE).manual_seed(1)
    return Conditioning(randn_bf16(g, 1, 512, 4096), randn_bf16(g, 1, 6, 16, 60, 104), randn_bf16(g, 1, 6, 16, 60, 104),
                        randn_bf16(g, 1, 6, 4, 60, 104).sign())  # fmt: skip


def _sample(model, cond) -> torch.Tensor:
    with torch.no_grad():
        return BlockSampler(model).generate(cond, GeneratorNoise(torch.Generator(DEVICE).manual_seed(2)))


def test_compiled_fp8_matches_eager_fp8(conditioning):
    eager, compiled = _sample(_model(True, False), conditioning), _sample(_model(True, True), conditioning)
    error = relative_error(compiled, eager)
    print(f"FP8 compiled vs FP8 eager, 2 blocks x 4 steps: relative L2 error {error:.2e}")
    assert error < 1e-2


def test_fp8_stays_near_bf16(conditioning):
    reference, quantized = _sample(_model(False, False), conditioning), _sample(_model(True, False), conditioning)
    error = relative_error(quantized, reference)
    print(f"FP8 vs bf16, 2 blocks x 4 steps: relative L2 error {error:.2e}")
    assert 0 < error < 0.1
