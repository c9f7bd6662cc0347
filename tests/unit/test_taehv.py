"""TAEHV: chunked streaming equals whole-video processing; the loader trims TGrow rows and names bad keys."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from inspatio_world.models.checkpoints import CheckpointError
from inspatio_world.models.taehv import DecoderStream, EncoderStream, TAEHV, TAEHVConfig, load_taehv

SMALL = TAEHVConfig(n_f=(32, 16, 16, 16))  # real layout (same keys and time strides), narrow decoder
# float64, so that chunking must be exact up to summation order; fp32 rounding (~1e-6 relative,
# from batch-size-dependent conv kernels) would otherwise need a tolerance hiding small errors.
DTYPE = torch.float64
TOL = dict(atol=1e-12, rtol=0)


def _lively(model: TAEHV, seed: int = 0) -> TAEHV:
    """He-initialised weights so activations neither vanish nor saturate the [0, 1] clamp: a wrong
    carried state then changes the outputs far beyond TOL."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in (m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * math.sqrt(2 / fan_in))
            if conv.bias is not None:
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=generator) * 0.1)
        model.decoder[-1].weight.mul_(0.02)
        model.decoder[-1].bias.fill_(0.5)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def model() -> TAEHV:
    return _lively(TAEHV(SMALL)).to(DTYPE)


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return torch.rand(1, 21, 3, 8, 16, generator=torch.Generator().manual_seed(1), dtype=DTYPE)


@pytest.fixture(scope="module")
def latents() -> torch.Tensor:
    return torch.randn(1, 7, 16, 1, 2, generator=torch.Generator().manual_seed(2), dtype=DTYPE)


@torch.no_grad()
def test_frame_counts_and_end_padding(model, frames):
    nine = frames[:, :9]
    latents = model.encode_video(nine)
    assert latents.shape == (1, 3, 16, 1, 2)
    padded = torch.cat([nine, nine[:, -1:].repeat(1, 3, 1, 1, 1)], 1)  # 12 frames: last one repeated
    torch.testing.assert_close(latents, model.encode_video(padded), **TOL)
    assert model.decode_video(latents).shape == (1, 9, 3, 8, 16)


@torch.no_grad()
@pytest.mark.parametrize(
    "chunks, latents_per_push",
    [((12, 9), [3, 3]), ((5, 7, 1, 8), [1, 2, 0, 3])],  # 21 frames, end-padded to 24 by the last push
    ids=["pipeline-blocks", "ragged"],
)
def test_encoder_stream_equals_whole_video(model, frames, chunks, latents_per_push):
    stream = EncoderStream(model)
    pieces = [stream.push(chunk, last=k == len(chunks) - 1) for k, chunk in enumerate(frames.split(list(chunks), dim=1))]
    assert [p.shape[1] for p in pieces] == latents_per_push
    torch.testing.assert_close(torch.cat(pieces, 1), model.encode_video(frames), **TOL)


@torch.no_grad()
def test_encoder_stream_carries_memory(model, frames):
    """The second chunk of a stream is not what a fresh encoder makes of it alone."""
    stream = EncoderStream(model)
    stream.push(frames[:, :12])
    carried = stream.push(frames[:, 12:], last=True)
    assert (carried - model.encode_video(frames[:, 12:])).abs().max() > 1e-3
    with pytest.raises(RuntimeError, match="already ended"):
        stream.push(frames[:, :4])


@torch.no_grad()
@pytest.mark.parametrize("chunks", [(3, 3, 1), (1, 2, 4)], ids=["pipeline-blocks", "ragged"])
def test_decoder_stream_equals_whole_video(model, latents, chunks):
    stream = DecoderStream(model)
    pieces = list(map(stream.push, latents.split(list(chunks), dim=1)))
    assert [p.shape[1] for p in pieces] == [4 * chunks[0] - 3] + [4 * n for n in chunks[1:]]  # trims once
    whole = model.decode_video(latents)
    unclamped = ((whole > 0) & (whole < 1)).double().mean().item()
    assert whole.std().item() > 0.05 and unclamped > 0.5  # neither flat nor saturated
    torch.testing.assert_close(torch.cat(pieces, 1), whole, **TOL)
    fresh = model.decode_video(latents[:, chunks[0] : sum(chunks[:2])])  # the second chunk alone: 3 frames trimmed
    assert (pieces[1][:, 3:] - fresh).abs().max() > 1e-3


@torch.no_grad()
def test_sequential_equals_parallel(model, frames, latents):
    nine, three = frames[:, :9], latents[:, :3]
    torch.testing.assert_close(model.encode_video(nine, parallel=False), model.encode_video(nine), **TOL)
    torch.testing.assert_close(model.decode_video(three, parallel=False), model.decode_video(three), **TOL)


def test_config_from_model_config_json():
    raw = {"checkpoint_name": "taew2_1.pth", "patch_size": 1, "latent_channels": 16, "n_f": [256, 128, 64, 64],
           "encoder_time_downscale": [True, True, False], "decoder_time_upscale": [False, True, True],
           "decoder_space_upscale": [True, True, True]}  # fmt: skip
    config = TAEHVConfig.from_dict(raw)
    assert config == TAEHVConfig()
    assert (config.t_downscale, config.t_upscale, config.frames_to_trim) == (4, 4, 3)
    with pytest.raises(ValueError, match="n_f"):
        TAEHVConfig.from_dict({"n_f": [64, 64]})


def test_real_layout_parameter_count():
    model = TAEHV()
    assert len(model.state_dict()) == 128
    assert sum(p.numel() for p in model.parameters()) == 11_315_539


# --- loading -------------------------------------------------------------------------------------

TGROW_KEY = "decoder.7.conv.weight"  # stride-1 TGrow, stored with a stride-2 layer's rows


@pytest.fixture
def checkpoint(model) -> dict[str, torch.Tensor]:
    state = {k: v.float() for k, v in model.state_dict().items()}  # float copies, as files store (fp16 really)
    rows = state[TGROW_KEY].shape[0]
    state[TGROW_KEY] = torch.cat([torch.full_like(state[TGROW_KEY], 7.0), state[TGROW_KEY]])  # 2x rows, real ones last
    assert state[TGROW_KEY].shape[0] == 2 * rows
    return state


@pytest.mark.parametrize("suffix, dtype", [(".pth", torch.float32), (".safetensors", torch.float16)])
def test_pth_and_safetensors_load_and_trim_to_last_rows(tmp_path, model, checkpoint, suffix, dtype):
    path = tmp_path / f"taew2_1{suffix}"
    if suffix == ".pth":
        torch.save(checkpoint, path)
    else:
        save_file(checkpoint, str(path))
    loaded = load_taehv(path, SMALL, dtype=dtype)
    assert not loaded.training
    got = loaded.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(got[key], value.float().to(dtype)), key


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth: weight file not found"):
        load_taehv(tmp_path / "nope.pth", SMALL)


def test_missing_key_is_named(tmp_path, checkpoint):
    del checkpoint["encoder.9.conv.2.bias"]
    save_file(checkpoint, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"w\.safetensors: missing key 'encoder\.9\.conv\.2\.bias'"):
        load_taehv(tmp_path / "w.safetensors", SMALL)


def test_wrong_shape_is_named(tmp_path, checkpoint):
    checkpoint["decoder.14.weight"] = torch.zeros(16, 16, 1, 1)
    save_file(checkpoint, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"w\.safetensors: key 'decoder\.14\.weight' has shape \(16, 16, 1, 1\)"):
        load_taehv(tmp_path / "w.safetensors", SMALL)
