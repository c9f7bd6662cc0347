"""The block-causal sampler: streaming, determinism, trimming and KV-cache behaviour."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.models.checkpoints import build_dit, init_random_
from inspatio_world.models.dit import DiTConfig
from inspatio_world.models.sampler import BlockSampler, Conditioning, GeneratorNoise, RecordedNoise
from tests.support.sampler_inputs import tiny_conditioning

TINY = DiTConfig(dim=32, ffn_dim=64, num_heads=2, num_layers=2, text_dim=16, text_len=8)


@pytest.fixture(scope="module")
def sampler():
    return BlockSampler(init_random_(build_dit(TINY), seed=1, std=0.1))


def _cond(frames=7, seed=0):
    return tiny_conditioning(TINY, frames, seed)


def _noise(seed):
    return GeneratorNoise(torch.Generator().manual_seed(seed))


def test_trims_to_whole_blocks_and_streams_the_same_tensors(sampler):
    cond = _cond(frames=7)
    whole = sampler.generate(cond, _noise(5))
    assert whole.shape == (1, 6, 16, 4, 6)
    streamed = list(sampler.blocks(cond, _noise(5)))
    assert [b.shape[1] for b in streamed] == [3, 3]
    assert torch.equal(torch.cat(streamed, dim=1), whole)


def test_seed_determines_output(sampler):
    cond = _cond()
    assert torch.equal(sampler.generate(cond, _noise(1)), sampler.generate(cond, _noise(1)))
    assert not torch.allclose(sampler.generate(cond, _noise(1)), sampler.generate(cond, _noise(2)))


def test_generator_draw_order_matches_recorded_replay(sampler):
    """Upstream order: all initial noise first, then 3 re-noise draws per block in step order."""
    cond = _cond(frames=6)
    g = torch.Generator().manual_seed(9)
    initial = torch.randn(1, 6, 16, 4, 6, generator=g)
    draws = torch.stack([torch.randn(3, 16, 4, 6, generator=g) for _ in range(6)])
    assert torch.equal(sampler.generate(cond, _noise(9)), sampler.generate(cond, RecordedNoise(initial, draws)))


def test_later_blocks_depend_on_the_previous_prediction(sampler):
    cond = _cond(frames=6)
    changed = Conditioning(cond.prompt_embeds, cond.ref_latent.clone(), cond.render_latent, cond.mask_latent)
    changed.ref_latent[:, :3] += 1.0  # only block 0's source frames
    a, b = sampler.generate(cond, _noise(3)), sampler.generate(changed, _noise(3))
    assert not torch.allclose(a[:, 3:], b[:, 3:])


def test_denoising_reads_but_never_overwrites_the_cached_context(sampler):
    cache = sampler.kv_cache(1, 12, torch.float32, "cpu")
    dit = sampler.dit
    text = dit.embed_text(torch.randn(1, TINY.text_len, TINY.text_dim))
    context = torch.randn(1, 36, 6, 4, 6)
    dit(context, torch.zeros(1, dtype=torch.long), text, cache=cache, cache_mode="write")
    cached = cache.k[:, :, : 6 * 12].clone()
    noisy = torch.randn(1, 16, 3, 4, 6)
    render = torch.randn(1, 20, 3, 4, 6)
    first = dit(noisy, torch.tensor([1000.0]), text, render=render, cache=cache, cache_mode="read", cache_length=72, time_offset=6)
    assert torch.equal(cache.k[:, :, :72], cached)
    again = dit(noisy, torch.tensor([1000.0]), text, render=render, cache=cache, cache_mode="read", cache_length=72, time_offset=6)
    assert torch.equal(first, again)


def test_too_few_frames_is_a_clear_error(sampler):
    with pytest.raises(ValueError, match="at least 3 latent frames"):
        sampler.generate(_cond(frames=2), _noise(0))
