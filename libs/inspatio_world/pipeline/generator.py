"""Step 3 of InSpatio-World, streamed: source + render + mask video and a prompt in, frames out per block.

Inputs are pixel videos [T, 3, H, W] (source and render in [-1, 1], mask in {-1, +1} with +1 =
pixel covered by the render), already at the generation size (480x832 for the real model).
T frames give N_lat = 1 + (T-1)//4 latents, of which N = N_lat - N_lat % 3 are generated
(whole blocks), decoded to 4N - 3 output frames: 9 for the first block, then 12 per block.

Unlike upstream, which encodes whole videos first and decodes at the end, each block's source and
render frames are encoded just before the block is generated, and its latents are decoded right
after: the autoencoders are causal, so the numbers are those of whole-video processing, and the
first frames are ready after one block.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..models.mask_latents import mask_to_latent, pixel_frames_of
from ..models.taehv import DecoderStream, EncoderStream
from ..models.sampler import BlockInputs, BlockSampler, GeneratorNoise, SamplerConfig
from ..stopping import StopCheck, go_on
from .models import AUTOENCODERS, GeneratorModels

LATENT_FRAMES_PER_PIXEL_GROUP = 4


def latent_count(num_frames: int) -> int:
    """Latents of a T-frame video: 1 + (T-1)//4 (Wan VAE) = ceil(T/4) (TAEHV)."""
    return 1 + (num_frames - 1) // LATENT_FRAMES_PER_PIXEL_GROUP


@dataclass(frozen=True)
class FramePlan:
    input_frames: int
    latent_frames: int  # generated latents (whole blocks)
    blocks: int

    @property
    def output_frames(self) -> int:
        return LATENT_FRAMES_PER_PIXEL_GROUP * self.latent_frames - 3

    @classmethod
    def for_frames(cls, num_frames: int, frames_per_block: int) -> "FramePlan":
        """Upstream generates only whole blocks: the latents beyond the last whole block are dropped."""
        latents = latent_count(num_frames)
        usable = latents - latents % frames_per_block
        return cls(num_frames, usable, usable // frames_per_block)


@dataclass(frozen=True)
class GenerationRequest:
    source: torch.Tensor  # [T, 3, H, W] in [-1, 1]
    render: torch.Tensor  # [T, 3, H, W] in [-1, 1]
    mask: torch.Tensor  # [T, C, H, W] in {-1, +1}; channel 0 is used
    prompt: str
    seed: int = 0
    autoencoder: str = "wan_vae"
    # Called with n before frames [0, n) of render and mask are first read: lets a caller fill them
    # while the generation runs (stages/render_feed.py). None: the videos are complete.
    ensure_frames: Callable[[int], None] | None = None


def conditioning_frames(latents: slice, autoencoder: str, num_frames: int) -> int:
    """How many input frames [0, n) latents [start, stop) are encoded from: the Wan VAE groups frames
    [0], [1-4], [5-8], ... (as the mask does); TAEHV [0-3], [4-7], ... (so block 0 needs 9 or 12)."""
    if autoencoder == "wan_vae":
        return pixel_frames_of(latents).stop
    return min(LATENT_FRAMES_PER_PIXEL_GROUP * latents.stop, num_frames)


@dataclass(frozen=True)
class GeneratedBlock:
    index: int
    blocks: int
    first_frame: int  # position of frames[0] in the output video
    frames: torch.Tensor  # [F, 3, H, W] float32 in [0, 1], on the models' device
    seconds: float  # encode + generate + decode of this block


class _BlockEncoder:
    """Encodes the source and render frames of each block on demand (the sampler's ConditioningSource)."""

    def __init__(self, models: GeneratorModels, request: GenerationRequest, plan: FramePlan, prompt_embeds: torch.Tensor):
        self.prompt_embeds = prompt_embeds
        self.num_frames = plan.latent_frames
        self._request = request
        self._models = models
        # One stream per video: encoding both as a batch of two measured no faster on an H100
        # (the convolutions already fill the GPU) and doubles the activation memory.
        if request.autoencoder == "wan_vae":
            self._streams = [models.wan_vae.encode_stream() for _ in range(2)]
        else:
            self._streams = [EncoderStream(models.taehv) for _ in range(2)]

    def block(self, span: slice) -> BlockInputs:
        request, dtype = self._request, self._models.dtype
        if request.ensure_frames is not None:
            request.ensure_frames(conditioning_frames(span, request.autoencoder, request.source.shape[0]))
        mask_frames = pixel_frames_of(span)
        mask_latent = mask_to_latent(self._pixels(request.mask, mask_frames), continuation=span.start > 0)
        videos = (request.source, request.render)
        if request.autoencoder == "wan_vae":
            # The Wan VAE groups frames like the mask: [0], [1-4], [5-8], ...
            latents = [stream.push(self._pixels(v, mask_frames)) for stream, v in zip(self._streams, videos)]
        else:
            # TAEHV groups [0-3], [4-7], ... in [0, 1] fp16 (rescaled in the working dtype, as upstream);
            # the video's last chunk is end-padded.
            frames = slice(LATENT_FRAMES_PER_PIXEL_GROUP * span.start, LATENT_FRAMES_PER_PIXEL_GROUP * span.stop)
            last = frames.stop >= request.source.shape[0]
            tae_dtype = next(self._models.taehv.parameters()).dtype
            latents = [
                stream.push((self._pixels(v, frames).permute(0, 2, 1, 3, 4) * 0.5 + 0.5).clamp(0, 1).to(tae_dtype), last=last)
                for stream, v in zip(self._streams, videos)
            ]
        ref, render = (latent[:, : span.stop - span.start].to(dtype) for latent in latents)
        return BlockInputs(ref, render, mask_latent)

    def _pixels(self, video: torch.Tensor, frames: slice) -> torch.Tensor:
        """[T, C, H, W] frames -> [1, C, F, H, W] on the device in the working dtype."""
        return video[frames].to(self._models.device, self._models.dtype).permute(1, 0, 2, 3).unsqueeze(0)


class VideoGenerator:
    def __init__(self, models: GeneratorModels, sampler_config: SamplerConfig = SamplerConfig(), cuda_graphs: bool | None = None) -> None:
        """`cuda_graphs` None: replay DiT passes from CUDA graphs when the models are on CUDA."""
        self.models = models
        use_graphs = models.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        self.sampler = BlockSampler(models.dit, sampler_config, cuda_graphs=use_graphs)
        self._decode_stream: torch.cuda.Stream | None = None  # made on first use (CUDA only)

    def plan(self, num_frames: int) -> FramePlan:
        return FramePlan.for_frames(num_frames, self.sampler.config.frames_per_block)

    def check_autoencoder(self, name: str) -> None:
        """ValueError unless `name` is an autoencoder this generator has loaded."""
        if name not in AUTOENCODERS:
            raise ValueError(f"autoencoder {name!r}: choose from {AUTOENCODERS}")
        if getattr(self.models, name) is None:
            raise ValueError(f"autoencoder {name!r} is not loaded on this generator")

    def validate(self, request: GenerationRequest) -> FramePlan:
        """Cheap checks before any model runs; raises ValueError with a message a person can act on."""
        self.check_autoencoder(request.autoencoder)
        shapes = {name: tuple(getattr(request, name).shape) for name in ("source", "render", "mask")}
        lengths = {shape[0] for shape in shapes.values()}
        sizes = {shape[2:] for shape in shapes.values()}
        if len(lengths) != 1 or len(sizes) != 1 or any(len(s) != 4 for s in shapes.values()):
            raise ValueError(f"source, render and mask must be [T, C, H, W] videos of one length and size, got {shapes}")
        height, width = next(iter(sizes))
        if height % 16 or width % 16:
            raise ValueError(f"frame size {height}x{width}: height and width must be multiples of 16")
        plan = self.plan(request.source.shape[0])
        if plan.blocks == 0:
            raise ValueError(f"{request.source.shape[0]} frames is too short: at least 9 frames make one block")
        return plan

    def stream(self, request: GenerationRequest, should_stop: StopCheck = go_on) -> Iterator[GeneratedBlock]:
        """Generate block by block; each yielded block's frames are final. `should_stop` is checked
        before every denoising step (stopping.py)."""
        plan = self.validate(request)
        models = self.models
        prompt_embeds = models.text_encoder.encode([request.prompt]).to(models.dtype)
        conditioning = _BlockEncoder(models, request, plan, prompt_embeds)
        noise = GeneratorNoise(torch.Generator(models.device).manual_seed(request.seed))
        decoder = self._decoder(request.autoencoder)
        first_frame = 0
        start = time.perf_counter()
        for index, frames in enumerate(self._decoded(self.sampler.blocks(conditioning, noise, should_stop=should_stop), decoder)):
            now = time.perf_counter()
            yield GeneratedBlock(index, plan.blocks, first_frame, frames, now - start)
            first_frame += frames.shape[0]
            start = time.perf_counter()

    def _decoded(self, blocks: Iterator[torch.Tensor], decoder) -> Iterator[torch.Tensor]:
        """Each block's frames [F, 3, H, W], computed and ready to read when yielded.

        On CUDA a block is decoded on a high-priority side stream while the next block is encoded
        and generated on the main one, so the GPU keeps working while the decoder runs and while
        the caller handles the frames. The first block is handed over as soon as it is decoded:
        decoding beside the DiT's long kernels slows the decoder down (0.5 -> 0.85 s to the first
        frames on an H100), while later blocks only need to keep pace. The same kernels run in the
        same order, so the numbers are those of decoding in line (tests/gpu).
        """
        device = self.models.device
        if device.type != "cuda":
            for latents in blocks:
                yield decoder(latents)[0].float()
            return
        if self._decode_stream is None:
            self._decode_stream = torch.cuda.Stream(device, priority=-1)
        main, side = torch.cuda.current_stream(device), self._decode_stream
        pending: tuple[torch.Tensor, torch.cuda.Event] | None = None
        for index, latents in enumerate(blocks):
            side.wait_stream(main)
            with torch.cuda.stream(side):
                latents.record_stream(side)  # made on the main stream, read on this one
                frames = decoder(latents)[0].float()
                decoded = torch.cuda.Event()
                decoded.record(side)
            if index == 0:
                yield _ready(frames, decoded, main)
                continue
            if pending is not None:
                yield _ready(*pending, main)
            pending = (frames, decoded)
        if pending is not None:
            yield _ready(*pending, main)

    def _decoder(self, name: str):
        """Per-block decode to [1, F, 3, H, W] in [0, 1], carrying the causal state across blocks."""
        if name == "wan_vae":
            stream = self.models.wan_vae.decode_stream()
            return lambda latents: (stream.push(latents) * 0.5 + 0.5).clamp(0, 1)
        stream = DecoderStream(self.models.taehv)
        tae_dtype = next(self.models.taehv.parameters()).dtype
        return lambda latents: stream.push(latents.to(tae_dtype))


def _ready(frames: torch.Tensor, decoded: torch.cuda.Event, main: torch.cuda.Stream) -> torch.Tensor:
    """Frames decoded on the side stream, safe for the caller to use on the main stream."""
    decoded.synchronize()
    frames.record_stream(main)  # the allocator must not hand this memory to the side stream early
    return frames
