"""Two CUDA devices: the sequence-parallel DiT over NCCL (bf16, real width, 2 layers) against one GPU.

Per-rank GEMMs see half the rows and may round differently, so the blocks are compared by relative
error; the exchanges themselves move data only, so CUDA-graph replay must equal direct calls exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspatio_world.models.checkpoints import build_dit, init_random_
from inspatio_world.models.dit import DiTConfig
from inspatio_world.models.sampler import BlockSampler, Conditioning, GeneratorNoise
from inspatio_world.models.sequence_parallel import SequenceShards, run_in_processes

from tests.support.tensors import randn_bf16, relative_error

pytestmark = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")

CONFIG = DiTConfig(num_layers=2)
RANKS = 2


def _cond(device) -> Conditioning:
    g = torch.Generator(device).manual_seed(1)
    return Conditioning(randn_bf16(g, 1, 512, 4096), randn_bf16(g, 1, 6, 16, 60, 104), randn_bf16(g, 1, 6, 16, 60, 104),
                        randn_bf16(g, 1, 6, 4, 60, 104).sign())  # fmt: skip


def _generate(sampler: BlockSampler, device) -> torch.Tensor:
    return sampler.generate(_cond(device), GeneratorNoise(torch.Generator(device).manual_seed(2))).cpu()


def _rank_run(shards: SequenceShards, folder: str) -> None:
    device = torch.device("cuda", shards.rank)
    dit = init_random_(build_dit(CONFIG, torch.bfloat16, device), seed=4)
    dit.use_sequence_parallel(shards)
    runs = {"eager": _generate(BlockSampler(dit), device)}
    dit.compile_blocks()
    runs["compiled"] = _generate(BlockSampler(dit), device)
    graphed = BlockSampler(dit, cuda_graphs=True)
    runs["graphed_capture"] = _generate(graphed, device)
    runs["graphed_replay"] = _generate(graphed, device)
    torch.save(runs, Path(folder) / f"rank{shards.rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sequence-parallel-cuda")
    run_in_processes(_rank_run, RANKS, "nccl", str(folder))
    single = _generate(BlockSampler(init_random_(build_dit(CONFIG, torch.bfloat16, "cuda"), seed=4)), torch.device("cuda"))
    return single, [torch.load(folder / f"rank{r}.pt") for r in range(RANKS)]


def test_two_gpus_match_one(runs):
    single, ranks = runs
    for name in ("eager", "compiled"):
        error = relative_error(ranks[0][name], single)
        print(f"2 GPUs ({name}) vs 1 GPU (eager), 2 blocks x 4 steps: relative L2 error {error:.2e}")
        assert error < 1e-2


def test_ranks_hold_identical_blocks(runs):
    _, ranks = runs
    for name, blocks in ranks[0].items():
        assert torch.equal(ranks[1][name], blocks), name


def test_cuda_graph_replay_is_identical_to_direct_calls(runs):
    _, ranks = runs
    assert torch.equal(ranks[0]["graphed_capture"], ranks[0]["compiled"])
    assert torch.equal(ranks[0]["graphed_replay"], ranks[0]["compiled"])
