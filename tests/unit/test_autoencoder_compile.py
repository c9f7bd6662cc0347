"""Compiled autoencoder steps (INSPATIO_COMPILE_AUTOENCODERS): traced whole, one graph per step
(a video's first chunk runs eager), none more for later blocks or videos, and the same outputs as
eager. On the CPU they trace through the `aot_eager` backend: the same capture and
guards as Inductor without a C++ build (tests/gpu/test_autoencoder_compile.py runs Inductor)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from inspatio_world import envvars
from inspatio_world.cli import build_parser
from inspatio_world.models.autoencoder_compile import channels_last_models, compile_step, mode_from_setting, use_channels_last
from inspatio_world.models.checkpoints import init_random_
from inspatio_world.models.taehv import TAEHV, TAEHVConfig
from inspatio_world.models.wan_vae import WanVAEConfig, build_wan_vae
from inspatio_world.models.wan_vae_blocks import Resample, cached_copy
from tests.support.autoencoder_streams import taehv_round_trip
from tests.support.dynamo import fresh_dynamo  # noqa: F401 (fixture)

# Smallest layouts that keep every kind of step: two temporal down/up-samples, the quirky cache.
WAN = WanVAEConfig(dim=4, dim_mult=(1, 1, 1), num_res_blocks=1, temperal_downsample=(True, True))
TAE = TAEHVConfig(n_f=(16, 8, 8, 8))

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


def _wan_video(vae, video, encode_chunks, decode_chunks):
    """Encode in `encode_chunks` frames, then decode those latents `decode_chunks` at a time."""
    encoder, decoder = vae.encode_stream(), vae.decode_stream(clamp=False)
    starts = [sum(encode_chunks[:i]) for i in range(len(encode_chunks) + 1)]
    latents = torch.cat([encoder.push(video[:, :, a:b]) for a, b in zip(starts, starts[1:])], dim=1)
    frames = torch.cat([decoder.push(part) for part in latents.split(decode_chunks, dim=1)], dim=1)
    return latents, frames


def test_wan_vae_compiled_steps_equal_eager_and_compile_once_per_signature():
    vae = init_random_(build_wan_vae(WAN), seed=5, std=0.2)
    video = torch.rand(1, 3, 21, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    eager = _wan_video(vae, video, (9, 12), 3)
    vae.use_compiled_steps("default", backend="aot_eager")
    compiled = _wan_video(vae, video, (9, 12), 3)
    assert _graphs() == 2  # encoder and decoder: one each (a first chunk runs eager)
    again = _wan_video(vae, video[:, :, :17].clone(), (1, 4, 12), 2)  # another video and block sizes, same steps
    assert _graphs() == 2
    for got in (compiled, again):  # `again` is a prefix: causal, so it equals the prefix of the outputs
        for value, reference in zip(got, eager):
            torch.testing.assert_close(value, reference[:, : value.shape[1]], atol=1e-5, rtol=1e-5)
    vae.use_compiled_steps(None)
    assert vae.run_encode_step == vae.encode_step


def test_taehv_compiled_chunks_equal_eager_and_compile_once_per_signature():
    model = init_random_(TAEHV(TAE), seed=3, std=0.2).eval().requires_grad_(False)
    frames = torch.rand(1, 33, 3, 16, 16, generator=torch.Generator().manual_seed(1))  # 12, 12, 9 + 3 padded

    with torch.no_grad():
        eager = taehv_round_trip(model, frames)
        model.use_compiled_steps("default", backend="aot_eager")
        compiled, again = taehv_round_trip(model, frames), taehv_round_trip(model, frames)
    assert _graphs() == 2  # encoder and decoder: one each; nothing for the second video
    for got in (compiled, again):
        for value, reference in zip(got, eager):
            torch.testing.assert_close(value, reference, atol=1e-5, rtol=1e-5)


def test_first_chunk_zero_past_keeps_eager_bit_exact():
    """The causal convs start from two zero frames of past instead of padding: identical numbers,
    so a video streamed in chunks still equals the whole-video pass bit for bit."""
    vae = init_random_(build_wan_vae(WAN), seed=5, std=0.2)
    video = torch.rand(1, 3, 13, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    whole = vae.encode(video)
    streamed, _ = _wan_video(vae, video, (1, 4, 8), 1)
    assert torch.equal(streamed, whole)


CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("value, device, mode", [
    ("0", CUDA, None), ("1", CPU, "default"), (" max-autotune ", CUDA, "max-autotune-no-cudagraphs"),
    ("auto", CUDA, "default"), ("auto", CPU, None),
])
def test_setting_names_the_mode(value, device, mode):
    assert mode_from_setting(envvars.COMPILE_AUTOENCODERS.name, value, device) == mode


@pytest.mark.parametrize("value, device, models", [
    ("auto", CUDA, ("wan_vae",)), ("auto", CPU, ()), ("1", CPU, ("wan_vae", "taehv")), ("0", CUDA, ()),
])
def test_channels_last_setting_names_the_models(value, device, models):
    assert channels_last_models(envvars.AUTOENCODER_CHANNELS_LAST.name, value, device) == models


def test_bad_setting_and_mode_are_refused():
    with pytest.raises(ValueError, match="INSPATIO_COMPILE_AUTOENCODERS='yes': expected one of auto, 0, 1, max-autotune"):
        mode_from_setting(envvars.COMPILE_AUTOENCODERS.name, "yes", CUDA)
    with pytest.raises(ValueError, match="INSPATIO_AUTOENCODER_CHANNELS_LAST='2': expected one of auto, 0, 1"):
        channels_last_models(envvars.AUTOENCODER_CHANNELS_LAST.name, "2", CUDA)
    with pytest.raises(ValueError, match="reduce-overhead"):
        compile_step(lambda x, past: x, "reduce-overhead", lambda past: False)
    # The measured winners on CUDA (README, Performance); the CPU keeps the eager reference path.
    assert envvars.COMPILE_AUTOENCODERS.default == envvars.AUTOENCODER_CHANNELS_LAST.default == "auto"


def test_channels_last_wan_vae_keeps_its_layout_and_numbers():
    """3-D and 2-D weights each take their rank's channels-last layout; caches stay channels-last."""
    vae = init_random_(build_wan_vae(WAN), seed=5, std=0.2)
    video = torch.rand(1, 3, 13, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    eager = _wan_video(vae, video, (5, 8), 2)
    use_channels_last(vae)
    assert vae.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    upsample = next(m for m in vae.decoder.modules() if isinstance(m, Resample))
    assert upsample.resample[1].weight.is_contiguous(memory_format=torch.channels_last)
    # (the CPU's conv3d ignores the weights' layout; cuDNN's follows it, and so do the caches:)
    activation = torch.randn(1, 8, 4, 6, 6).contiguous(memory_format=torch.channels_last_3d)
    tail = cached_copy(activation[:, :, -2:])
    assert tail.stride() == torch.empty(1, 8, 2, 6, 6).contiguous(memory_format=torch.channels_last_3d).stride()
    assert cached_copy(activation.contiguous()[:, :, -2:]).is_contiguous()
    for value, reference in zip(_wan_video(vae, video, (5, 8), 2), eager):  # other conv kernels: fp32 rounding
        torch.testing.assert_close(value, reference, atol=1e-3, rtol=1e-3)
    use_channels_last(vae, False)
    assert vae.encoder.conv1.weight.is_contiguous()


def test_bench_option_takes_modes_and_refuses_others(capsys):
    args = build_parser().parse_args(["bench", "generator", "--compile-autoencoders", "default, max-autotune-no-cudagraphs"])
    assert args.compile_autoencoders == ("default", "max-autotune-no-cudagraphs")
    assert build_parser().parse_args(["bench", "generator"]).compile_autoencoders == ()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "generator", "--compile-autoencoders", "reduce-overhead"])
    assert "a comma-separated list of default, max-autotune-no-cudagraphs" in capsys.readouterr().err
