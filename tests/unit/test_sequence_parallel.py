"""Sequence-parallel DiT passes (models/sequence_parallel.py): two gloo processes on 127.0.0.1 run the
sampler on a tiny fp32 DiT and must reproduce one process's blocks and KV cache (their heads of it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inspatio_world.models.checkpoints import build_dit, init_random_
from inspatio_world.models.dit import DiTConfig
from inspatio_world.models.sampler import BlockSampler, GeneratorNoise
from inspatio_world.models.sequence_parallel import SequenceShards, run_in_processes
from tests.support.sampler_inputs import tiny_conditioning

# 4 heads (2 per rank); 4x6 latents make 6 tokens per frame, so a rank's 9 or 18 tokens cross frames.
TINY = DiTConfig(dim=32, ffn_dim=64, num_heads=4, num_layers=2, text_dim=16, text_len=8)
RANKS = 2
FRAMES = 9  # three blocks: a 3-frame context, then two 6-frame ones


def _generate(shards: SequenceShards | None) -> dict[str, torch.Tensor]:
    dit = init_random_(build_dit(TINY), seed=1, std=0.1)
    dit.use_sequence_parallel(shards)
    sampler = BlockSampler(dit)
    blocks = sampler.generate(tiny_conditioning(TINY, FRAMES), GeneratorNoise(torch.Generator().manual_seed(5)))
    return {"blocks": blocks, "k": sampler._cache.k, "v": sampler._cache.v}


def _rank_run(shards: SequenceShards, folder: str) -> None:
    torch.save(_generate(shards), Path(folder) / f"rank{shards.rank}.pt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sequence-parallel")
    run_in_processes(_rank_run, RANKS, "gloo", str(folder))
    return _generate(None), [torch.load(folder / f"rank{r}.pt") for r in range(RANKS)]


def test_every_rank_gets_the_single_process_blocks(runs):
    single, ranks = runs
    assert single["blocks"].shape == (1, FRAMES, 16, 4, 6)
    for rank in ranks:
        error = float((rank["blocks"] - single["blocks"]).abs().max())
        assert error < 1e-5, error


def test_each_rank_caches_its_heads_of_every_token(runs):
    single, ranks = runs
    heads = TINY.num_heads // RANKS
    for r, rank in enumerate(ranks):
        assert rank["k"].shape[3] == heads  # cache memory per rank: 1/P of one process's
        for name in ("k", "v"):
            expected = single[name][:, :, :, r * heads : (r + 1) * heads]
            assert float((rank[name] - expected).abs().max()) < 1e-5


def test_heads_and_tokens_must_split_evenly():
    dit = build_dit(TINY)
    with pytest.raises(ValueError, match="4 heads"):
        dit.use_sequence_parallel(SequenceShards("unused", rank=0, size=3))
    with pytest.raises(ValueError, match="18 tokens"):
        SequenceShards("unused", rank=0, size=4).span(18)
