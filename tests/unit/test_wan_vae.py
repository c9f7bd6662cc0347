"""Wan2.1 VAE: streaming equals whole-video bit for bit, the upsample3d cache quirk, and weight loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from inspatio_world.models.checkpoints import CheckpointError, init_random_
from inspatio_world.models.wan_vae import WanVAE, WanVAEConfig, build_wan_vae, load_wan_vae
from inspatio_world.models.wan_vae_blocks import Resample

TINY = WanVAEConfig(dim=4)
LATENTS = 7  # enough for the upsample3d quirk to change frames (it starts at latent 3)
FRAMES = 1 + 4 * (LATENTS - 1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is bound by per-op overhead; extra threads only add synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vae() -> WanVAE:
    # std 0.2: large enough that activations do not vanish through the tiny random network
    return init_random_(build_wan_vae(TINY), seed=5, std=0.2)


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    return torch.rand(1, 3, FRAMES, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(scope="module")
def latents(vae, video) -> torch.Tensor:
    return vae.encode(video)


@pytest.fixture(scope="module")
def decoded_raw(vae, latents) -> torch.Tensor:
    return vae.decode(latents, clamp=False)


def test_shapes_and_ranges(vae, latents, decoded_raw):
    assert latents.shape == (1, LATENTS, 16, 2, 2) and latents.dtype == torch.float32
    assert decoded_raw.shape == (1, FRAMES, 3, 16, 16) and decoded_raw.dtype == torch.float32
    assert decoded_raw.abs().max() > 1  # so the clamp below is exercised
    clamped = vae.decode(latents[:, :2])  # causal: a prefix of latents decodes to a prefix of frames
    assert torch.equal(clamped, decoded_raw[:, :5].clamp(-1, 1))


def test_encode_drops_incomplete_last_group_like_upstream(vae, video, latents):
    assert torch.equal(vae.encode(video[:, :, :8]), latents[:, :2])  # frames 5..7 are dropped


@pytest.mark.parametrize("chunks", [(9, 12, 4), (1, 4, 20)])
def test_streaming_encode_equals_whole(vae, video, latents, chunks):
    stream = vae.encode_stream()
    parts, start = [], 0
    for n in chunks:
        part = stream.push(video[:, :, start : start + n])
        assert part.shape[1] == (1 + (n - 1) // 4 if start == 0 else n // 4)
        parts.append(part)
        start += n
    assert torch.equal(torch.cat(parts, dim=1), latents)


def test_encode_stream_rejects_misaligned_chunks(vae, video):
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        vae.encode_stream().push(video[:, :, :4])
    stream = vae.encode_stream()
    stream.push(video[:, :, :5])
    with pytest.raises(ValueError, match="4k frames"):
        stream.push(video[:, :, 5:8])


@pytest.mark.parametrize("chunks", [(3, 3, 1), (1, 2, 4)])
def test_streaming_decode_equals_whole(vae, latents, decoded_raw, chunks):
    stream = vae.decode_stream(clamp=False)
    parts, start = [], 0
    for n in chunks:
        part = stream.push(latents[:, start : start + n])
        assert part.shape[1] == (1 + 4 * (n - 1) if start == 0 else 4 * n)
        parts.append(part)
        start += n
    assert torch.equal(torch.cat(parts, dim=1), decoded_raw)


def test_upsample3d_cache_quirk_duplicates_current_frame():
    """Spec §6.4: after a 1-frame chunk the cached past is [x, x] (upstream Wan keeps [x_prev, x])."""
    up = Resample(2, "upsample3d").eval()
    cache = {}
    x0, x1, x2 = (torch.randn(1, 2, 1, 3, 3) for _ in range(3))
    with torch.no_grad():
        assert up(x0, cache).shape[2] == 1  # first chunk: no time conv
        assert torch.count_nonzero(cache[up.time_conv]) == 0
        assert up(x1, cache).shape[2] == 2
        assert torch.equal(cache[up.time_conv], torch.cat([torch.zeros_like(x1), x1], dim=2))
        up(x2, cache)
        assert torch.equal(cache[up.time_conv], torch.cat([x2, x2], dim=2))


def test_real_config_architecture():
    with torch.device("meta"):
        model = WanVAE(WanVAEConfig())
    state = model.state_dict()
    assert len(state) == 194
    assert sum(v.numel() for v in state.values()) == 126_892_531
    assert state["decoder.upsamples.3.time_conv.weight"].shape == (768, 384, 3, 1, 1)
    assert state["encoder.middle.1.norm.gamma"].shape == (384, 1, 1)


def test_config_from_fixture_style_dict():
    config = WanVAEConfig.from_dict({"dim": 8, "dim_mult": [1, 2, 4, 4], "temperal_downsample": [False, True, True], "extra": 1})
    assert config.dim == 8 and config.dim_mult == (1, 2, 4, 4) and config.temperal_downsample == (False, True, True)
    with pytest.raises(ValueError, match="latent_mean"):
        WanVAEConfig.from_dict({"z_dim": 4})


@pytest.fixture
def state(vae):
    return {k: v.clone() for k, v in vae.state_dict().items()}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_both_formats_load(tmp_path, state, suffix):
    path = tmp_path / f"Wan2.1_VAE{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    model = load_wan_vae(path, TINY, dtype=torch.bfloat16)
    key = "decoder.upsamples.3.time_conv.weight"
    assert model.dtype == torch.bfloat16
    assert torch.equal(model.state_dict()[key], state[key].to(torch.bfloat16))
    assert load_wan_vae(path, TINY, dtype=torch.float32).state_dict().keys() == state.keys()


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth: weight file not found"):
        load_wan_vae(tmp_path / "nope.pth", TINY)


def test_missing_key_is_named(tmp_path, state):
    del state["decoder.head.2.bias"]
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=r"w\.pth: missing key 'decoder\.head\.2\.bias'"):
        load_wan_vae(tmp_path / "w.pth", TINY)


def test_wrong_shape_is_named(tmp_path, state):
    state["encoder.conv1.weight"] = torch.zeros(5, 3, 3, 3, 3)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"w\.safetensors: key 'encoder\.conv1\.weight' has shape"):
        load_wan_vae(tmp_path / "w.safetensors", TINY)
