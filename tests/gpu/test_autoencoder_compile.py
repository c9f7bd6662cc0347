"""CUDA only: the Inductor-compiled autoencoder steps (INSPATIO_COMPILE_AUTOENCODERS) and channels-last
convolutions (INSPATIO_AUTOENCODER_CHANNELS_LAST) give eager's outputs within bf16/fp16 rounding; a
compiled step compiles once (twice at most, should Inductor's output strides differ from eager's
after a video's first chunk), and never again for later blocks or videos."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from inspatio_world.models.autoencoder_compile import use_channels_last
from inspatio_world.models.checkpoints import init_random_
from inspatio_world.models.taehv import TAEHV, TAEHVConfig
from inspatio_world.models.wan_vae import WanVAEConfig, build_wan_vae
from tests.support.autoencoder_streams import taehv_round_trip
from tests.support.dynamo import fresh_dynamo  # noqa: F401 (fixture)
from tests.support.tensors import relative_error

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"), pytest.mark.usefixtures("fresh_dynamo")]

# The default mode only: max-autotune tunes each convolution for minutes and made this file outrun
# a 10-minute device call; its kernels differ from the default mode's in choice, not in what they compute.
MODES = [None, "default"]


def _check_fast_path(model, run, mode, channels_last: bool) -> None:
    """`run()` (latents, frames) after switching `model` to the fast path equals eager's within
    bf16/fp16 rounding, twice, and the second video compiles nothing."""
    eager = run()
    use_channels_last(model, channels_last)
    model.use_compiled_steps(mode)
    compiled = run()
    graphs = counters["stats"]["unique_graphs"]
    again = run()
    assert graphs <= (0 if mode is None else 4) and counters["stats"]["unique_graphs"] == graphs
    for got in (compiled, again):
        for value, reference in zip(got, eager):
            assert relative_error(value, reference) < 2e-2, (mode, relative_error(value, reference))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_wan_vae_bf16(mode, channels_last):
    if mode is None and not channels_last:
        pytest.skip("the eager reference itself")
    vae = init_random_(build_wan_vae(WanVAEConfig(dim=16), torch.bfloat16, "cuda"), seed=5, std=0.05)
    video = torch.rand(1, 3, 33, 64, 96, device="cuda", generator=torch.Generator("cuda").manual_seed(0)) * 2 - 1

    def run():
        encoder, decoder = vae.encode_stream(), vae.decode_stream()
        latents = torch.cat([encoder.push(video[:, :, a:b]) for a, b in ((0, 9), (9, 21), (21, 33))], dim=1)
        return latents, torch.cat([decoder.push(part) for part in latents.to(torch.bfloat16).split(3, dim=1)], dim=1)

    _check_fast_path(vae, run, mode, channels_last)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_taehv_fp16(mode, channels_last):
    if mode is None and not channels_last:
        pytest.skip("the eager reference itself")
    model = init_random_(TAEHV(TAEHVConfig()).to("cuda", torch.float16), seed=3, std=0.05).eval().requires_grad_(False)
    frames = torch.rand(1, 33, 3, 64, 96, device="cuda", dtype=torch.float16)

    with torch.no_grad():
        _check_fast_path(model, lambda: taehv_round_trip(model, frames), mode, channels_last)
