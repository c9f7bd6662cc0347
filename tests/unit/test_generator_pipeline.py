"""The streamed generator pipeline on tiny random weights: same numbers as whole-video processing."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.jobs.local_stages import generator_identity
from inspatio_world.models.checkpoints import CheckpointError
from inspatio_world.models.fp8_linear import Fp8Linear
from inspatio_world.models.mask_latents import mask_to_latent
from inspatio_world.models.sampler import Conditioning, GeneratorNoise
from inspatio_world.pipeline.generator import GenerationRequest, VideoGenerator
from inspatio_world.pipeline.models import GeneratorModels
from inspatio_world.pipeline.tiny_weights import write_tiny_weights
from inspatio_world.pipeline.weights import WeightsFolder

T, H, W = 25, 32, 48  # 7 latents -> 2 blocks -> 21 output frames


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    weights = write_tiny_weights(tmp_path_factory.mktemp("weights"), conditioning=False)
    models = GeneratorModels.load(weights, torch.device("cpu"), autoencoders=("wan_vae", "taehv"))
    return VideoGenerator(models)


def _request(autoencoder: str, seed: int = 3) -> GenerationRequest:
    g = torch.Generator().manual_seed(0)
    source = torch.rand(T, 3, H, W, generator=g) * 2 - 1
    mask = torch.ones(T, 3, H, W)
    mask[:, :, :, :12] = -1
    return GenerationRequest(source, source.roll(4, -1) * (mask > 0), mask, "a car on the street", seed, autoencoder)


def _whole_video_reference(generator: VideoGenerator, request: GenerationRequest) -> torch.Tensor:
    """Upstream's order: encode whole videos, generate all latents, decode the whole sequence."""
    models = generator.models
    plan = generator.plan(T)
    video = lambda v: v.permute(1, 0, 2, 3).unsqueeze(0)  # noqa: E731  [T,C,H,W] -> [1,C,T,H,W]
    if request.autoencoder == "wan_vae":
        encode = models.wan_vae.encode
    else:
        encode = lambda v: models.taehv.encode_video((v.permute(0, 2, 1, 3, 4) * 0.5 + 0.5).clamp(0, 1))  # noqa: E731
    n = plan.latent_frames
    cond = Conditioning(
        models.text_encoder.encode([request.prompt]),
        encode(video(request.source))[:, :n],
        encode(video(request.render))[:, :n],
        mask_to_latent(video(request.mask))[:, :n],
    )
    latents = generator.sampler.generate(cond, GeneratorNoise(torch.Generator().manual_seed(request.seed)))
    if request.autoencoder == "wan_vae":
        return (models.wan_vae.decode(latents)[0] * 0.5 + 0.5).clamp(0, 1)
    return models.taehv.decode_video(latents)[0]


@pytest.mark.parametrize("autoencoder", ["wan_vae", "taehv"])
def test_streamed_blocks_equal_whole_video_processing(generator, autoencoder):
    request = _request(autoencoder)
    blocks = list(generator.stream(request))
    assert [b.frames.shape[0] for b in blocks] == [9, 12]
    assert [b.first_frame for b in blocks] == [0, 9]
    streamed = torch.cat([b.frames for b in blocks])
    reference = _whole_video_reference(generator, request)
    assert streamed.shape == reference.shape == (21, 3, H, W)
    assert torch.allclose(streamed, reference, atol=1e-5), float((streamed - reference).abs().max())


def test_seed_changes_the_video(generator):
    a = torch.cat([b.frames for b in generator.stream(_request("wan_vae", seed=1))])
    b = torch.cat([b.frames for b in generator.stream(_request("wan_vae", seed=2))])
    assert not torch.allclose(a, b)


def test_bad_requests_fail_before_any_model_runs(generator):
    good = _request("wan_vae")
    with pytest.raises(ValueError, match="too short"):
        generator.validate(GenerationRequest(good.source[:5], good.render[:5], good.mask[:5], "x"))
    with pytest.raises(ValueError, match="one length and size"):
        generator.validate(GenerationRequest(good.source, good.render[:20], good.mask, "x"))
    with pytest.raises(ValueError, match="multiples of 16"):
        generator.validate(GenerationRequest(good.source[..., :40], good.render[..., :40], good.mask[..., :40], "x"))
    with pytest.raises(ValueError, match="autoencoder 'vqgan'"):
        generator.validate(GenerationRequest(good.source, good.render, good.mask, "x", autoencoder="vqgan"))


def test_missing_weights_fail_at_load_naming_the_file(tmp_path):
    weights = write_tiny_weights(tmp_path / "w", conditioning=False)
    weights.vae_file.unlink()
    with pytest.raises(CheckpointError, match="Wan2.1_VAE.pth: required weight file not found"):
        GeneratorModels.load(weights, torch.device("cpu"))
    with pytest.raises(CheckpointError, match="weights folder not found"):
        GeneratorModels.load(WeightsFolder(tmp_path / "nowhere"), torch.device("cpu"))


def test_fp8_option_quantizes_the_blocks_and_stays_near_the_plain_video(generator, tmp_path):
    weights = write_tiny_weights(tmp_path / "weights", conditioning=False)
    fp8 = VideoGenerator(GeneratorModels.load(weights, torch.device("cpu"), autoencoders=("wan_vae",), fp8=True))
    assert any(isinstance(m, Fp8Linear) for m in fp8.models.dit.blocks.modules())
    assert not any(isinstance(m, Fp8Linear) for m in generator.models.dit.modules())
    quantized = torch.cat([b.frames for b in fp8.stream(_request("wan_vae"))])
    plain = torch.cat([b.frames for b in generator.stream(_request("wan_vae"))])
    error = float((quantized - plain).norm() / plain.norm())
    assert 0 < error < 0.1, error


def test_fp8_outputs_have_their_own_model_identity(tmp_path):
    weights = write_tiny_weights(tmp_path / "weights", conditioning=False)
    plain, fp8 = (generator_identity(weights, ("wan_vae",), fp8=flag) for flag in (False, True))
    assert plain.digest != fp8.digest and fp8.name == "generator-fp8"
