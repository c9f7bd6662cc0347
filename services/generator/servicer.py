"""GeneratorService over `stages.generate.run_generate`: each block is streamed as soon as it exists."""

from __future__ import annotations

from typing import Iterator

from inspatio_world.pipeline.generator import VideoGenerator
from inspatio_world.rpc.call_stop import call_stop_check
from inspatio_world.rpc.convert import block_to_proto, identity_to_proto, key_to_ref, ref_to_key, timing_to_proto, video_ref_to_key
from inspatio_world.rpc.options_proto import autoencoder_name
from inspatio_world.rpc.generated import generator_pb2, generator_pb2_grpc
from inspatio_world.rpc.metrics import ServiceMetrics
from inspatio_world.stages.generate import BlockPublished, GenerateInputs, run_generate
from inspatio_world.stages.identity import ModelIdentity
from inspatio_world.store.base import ObjectStore


class GeneratorServicer(generator_pb2_grpc.GeneratorServiceServicer):
    def __init__(self, store: ObjectStore, generator: VideoGenerator, identity: ModelIdentity, metrics: ServiceMetrics) -> None:
        self.store, self.generator, self.identity, self.metrics = store, generator, identity, metrics

    def Generate(self, request: generator_pb2.GenerateRequest, context) -> Iterator[generator_pb2.GenerateEvent]:
        if not request.prompt.strip():
            raise ValueError("prompt is empty")
        inputs = GenerateInputs(
            *video_ref_to_key(self.store, request.video),
            ref_to_key(self.store, request.schedule, "schedule"), ref_to_key(self.store, request.render, "render"),
            ref_to_key(self.store, request.mask, "mask"), request.prompt, request.seed, autoencoder_name(request.autoencoder),
        )  # fmt: skip
        for event in run_generate(self.store, inputs, self.generator, self.identity, request.force,
                                  call_stop_check(context, "generate")):
            if isinstance(event, BlockPublished):
                self.metrics.frames_generated(event.frames)
                self.metrics.observe_block(event.seconds)
                yield generator_pb2.GenerateEvent(block=block_to_proto(self.store, event))
            else:
                self.metrics.observe_stage("generate", event.timing.seconds, event.timing.cache_hit)
                refs = {name: key_to_ref(self.store, key) for name, key in event.keys.items()}
                yield generator_pb2.GenerateEvent(done=generator_pb2.GenerateResult(
                    video=refs["pred"], frames=event.frames, timing=timing_to_proto(event.timing),
                    model=identity_to_proto(self.identity), source=refs["source"], render=refs["render"], compare=refs["compare"],
                ))  # fmt: skip
