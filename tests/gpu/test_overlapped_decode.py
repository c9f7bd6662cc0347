"""CUDA only: decoding each block on a side stream while the next one generates gives the frames
that decoding in line does (tiny weights, both autoencoders)."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.models.sampler import GeneratorNoise
from inspatio_world.pipeline.generator import GenerationRequest, VideoGenerator, _BlockEncoder
from inspatio_world.pipeline.models import GeneratorModels
from inspatio_world.pipeline.tiny_weights import write_tiny_weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

T, H, W = 37, 32, 48  # 10 latents -> 3 blocks


def _request(autoencoder: str) -> GenerationRequest:
    g = torch.Generator().manual_seed(0)
    source = torch.rand(T, 3, H, W, generator=g) * 2 - 1
    mask = torch.ones(T, 3, H, W)
    mask[:, :, :, :12] = -1
    return GenerationRequest(source, source.roll(4, -1) * (mask > 0), mask, "a car on the street", 5, autoencoder)


def _in_line(generator: VideoGenerator, request: GenerationRequest) -> torch.Tensor:
    """Encode, generate and decode one block after the other on one stream."""
    models = generator.models
    prompt = models.text_encoder.encode([request.prompt]).to(models.dtype)
    conditioning = _BlockEncoder(models, request, generator.validate(request), prompt)
    noise = GeneratorNoise(torch.Generator(models.device).manual_seed(request.seed))
    decoder = generator._decoder(request.autoencoder)
    return torch.cat([decoder(latents)[0].float() for latents in generator.sampler.blocks(conditioning, noise)])


@pytest.mark.parametrize("autoencoder", ["wan_vae", "taehv"])
def test_overlapped_decode_equals_in_line_decode(tmp_path, autoencoder):
    weights = write_tiny_weights(tmp_path / "weights", conditioning=False)
    models = GeneratorModels.load(weights, torch.device("cuda"), autoencoders=(autoencoder,), compile_dit=False)
    generator = VideoGenerator(models, cuda_graphs=False)
    request = _request(autoencoder)
    blocks = list(generator.stream(request))
    assert [b.frames.shape[0] for b in blocks] == [9, 12, 12]
    streamed = torch.cat([b.frames for b in blocks])
    reference = _in_line(generator, request)
    assert streamed.shape == reference.shape
    assert torch.allclose(streamed, reference, atol=1e-3), float((streamed - reference).abs().max())
