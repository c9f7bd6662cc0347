"""GeneratorService over `stages.generate.run_generate` and `stages.render_feed.run_render_and_generate`:
each block is streamed as soon as it exists. RenderAndGenerate renders on the generator's device
(the render holds no model: a point-cloud warp of the depth stage's output)."""

from __future__ import annotations

from typing import Iterator

import torch

from inspatio_world.pipeline.generator import VideoGenerator
from inspatio_world.rpc.call_stop import call_stop_check
from inspatio_world.rpc.convert import (
    block_to_proto, generate_output_to_proto, ref_to_key, render_options_from_proto, render_output_to_proto, video_ref_to_key,
)  # fmt: skip
from inspatio_world.refusals import VersionNotServed
from inspatio_world.rpc.options_proto import autoencoder_name, version_name
from inspatio_world.rpc.generated import generator_pb2, generator_pb2_grpc
from inspatio_world.rpc.metrics import ServiceMetrics
from inspatio_world.stages.generate import BlockPublished, GenerateInputs, GenerateOutput, run_generate
from inspatio_world.stages.identity import ModelIdentity
from inspatio_world.stages.render import RenderOutput
from inspatio_world.stages.render_feed import run_render_and_generate
from inspatio_world.store.base import ObjectStore


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(self, store: ObjectStore, generator: VideoGenerator, identity: ModelIdentity, metrics: ServiceMetrics,
                 device: torch.device | None = None, model_version: str = "v1") -> None:  # fmt: skip
        """`device`: where RenderAndGenerate renders (the generator's device; None: CUDA when present);
        `model_version`: the release whose weights it loaded: requests for another are refused."""
        self.store, self.generator, self.identity, self.metrics, self.device = store, generator, identity, metrics, device
        self.model_version = model_version

    def _check_version(self, value: int) -> str:
        requested = version_name(value)
        if requested != self.model_version:
            raise VersionNotServed(f"this generator serves model_version {self.model_version}, the request asks for {requested}: "
                                   f"route {requested} jobs to a generator with INSPATIO_MODEL_VERSION={requested}")  # fmt: skip
        return requested

    def Generate(self, request: generator_pb2.GenerateRequest, context) -> Iterator[generator_pb2.GenerateEvent]:
        version = self._check_version(request.model_version)
        _check_prompt(request.prompt)
        inputs = GenerateInputs(
            *video_ref_to_key(self.store, request.video),
            ref_to_key(self.store, request.schedule, "schedule"), ref_to_key(self.store, request.render, "render"),
            ref_to_key(self.store, request.mask, "mask"), request.prompt, request.seed, autoencoder_name(request.autoencoder),
            version,
        )  # fmt: skip
        for event in run_generate(self.store, inputs, self.generator, self.identity, request.force,
                                  call_stop_check(context, "generate")):
            if isinstance(event, BlockPublished):
                yield generator_pb2.GenerateEvent(block=self._block(event))
            else:
                yield generator_pb2.GenerateEvent(done=self._done(event))

    def RenderAndGenerate(self, request: generator_pb2.RenderAndGenerateRequest, context
                          ) -> Iterator[generator_pb2.RenderAndGenerateEvent]:  # fmt: skip
        # Cheap checks first, as DepthRender.Render and Generate make them: bad options fail before any download.
        self._check_version(request.options.model_version)
        options = render_options_from_proto(request.options)
        _check_prompt(request.prompt)
        autoencoder = autoencoder_name(request.autoencoder)
        self.generator.check_autoencoder(autoencoder)
        depth_key = ref_to_key(self.store, request.depth, "depth")
        video_key, digest = video_ref_to_key(self.store, request.video)
        events = run_render_and_generate(self.store, video_key, digest, depth_key, options, request.prompt, request.seed, autoencoder,
                                         self.generator, self.identity, self.device, request.options.force,
                                         call_stop_check(context, "render and generate"))  # fmt: skip
        for event in events:
            if isinstance(event, RenderOutput):
                self.metrics.observe_stage("render", event.timing.seconds, event.timing.cache_hit)
                yield generator_pb2.RenderAndGenerateEvent(rendered=render_output_to_proto(self.store, event))
            elif isinstance(event, BlockPublished):
                yield generator_pb2.RenderAndGenerateEvent(block=self._block(event))
            else:
                yield generator_pb2.RenderAndGenerateEvent(done=self._done(event))

    def _block(self, block: BlockPublished):
        self.metrics.frames_generated(block.frames)
        self.metrics.observe_block(block.seconds)
        return block_to_proto(self.store, block)

    def _done(self, output: GenerateOutput) -> generator_pb2.GenerateResult:
        self.metrics.observe_stage("generate", output.timing.seconds, output.timing.cache_hit)
        return generate_output_to_proto(self.store, output, self.identity)


def _check_prompt(prompt: str) -> None:
    if not prompt.strip():
        raise ValueError("prompt is empty")
