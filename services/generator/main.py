"""`python -m services.generator.main`: the block-causal generator over gRPC, streaming blocks
(Generate from a render made before; RenderAndGenerate renders too, on the generator's device).

TAEHV is loaded when its checkpoint is present or INSPATIO_TAEHV_CHECKPOINT names one (jobs may then
choose it); the Wan VAE always is. INSPATIO_FP8=1 runs the DiT blocks' linear layers in FP8 (under a
separate model identity); INSPATIO_COMPILE (auto/1/0) compiles the DiT blocks; INSPATIO_SHARED_GPU=1
keeps umT5 in host memory between prompts (the GPU is shared with the other services).
INSPATIO_MODEL_VERSION (v1, v1_5) picks the release whose DiT checkpoint it loads and whose jobs it
takes; requests for the other are refused with FAILED_PRECONDITION.
"""

from __future__ import annotations

import logging

import torch

from inspatio_world import envvars
from inspatio_world.jobs.local_stages import generator_identity
from inspatio_world.jobs.options import MODEL_VERSIONS
from inspatio_world.models.attention import selected_backends
from inspatio_world.models.rope import configured_precision
from inspatio_world.pipeline.generator import VideoGenerator
from inspatio_world.pipeline.models import GeneratorModels
from inspatio_world.rpc.bootstrap import ServiceSettings, run_service
from inspatio_world.rpc.generated import generator_pb2_grpc, session_pb2_grpc

from .servicer import GeneratorServicer
from .session_servicer import GeneratorSessionServicer

log = logging.getLogger("inspatio.generator")


def load(settings, store, server):
    fp8 = envvars.get_flag(envvars.FP8)
    compile_dit = envvars.get_auto_flag(envvars.COMPILE)  # None: compile on CUDA
    version = envvars.get(envvars.MODEL_VERSION)
    if version not in MODEL_VERSIONS:
        raise ValueError(f"{envvars.MODEL_VERSION.name}={version!r}: choose from {MODEL_VERSIONS}")
    weights = settings.weights().for_version(version)
    # a TAEHV named by its variable is required: a wrong path fails start-up rather than dropping TAEHV
    taehv = weights.taehv_checkpoint is not None or weights.taehv_file.is_file()
    autoencoders = ("wan_vae", "taehv") if taehv else ("wan_vae",)
    for name in autoencoders:
        weights.check(name)  # before the identity reads the files
    identity = generator_identity(weights, autoencoders, fp8)
    server.metrics.set_model(identity.name, identity.digest, identity.random)
    device = torch.device(settings.device)
    models = GeneratorModels.load(weights, device, autoencoders, compile_dit=compile_dit, fp8=fp8,
                                  offload_text_encoder=settings.shared_gpu)  # fmt: skip
    generator = VideoGenerator(models)
    kernels = selected_backends()
    log.info("DiT kernels on %s: self-attention %s, cross-attention %s, RoPE in %s", device, kernels["self"], kernels["cross"],
             configured_precision(device))  # fmt: skip
    sessions = GeneratorSessionServicer(store, generator, identity, server.metrics)  # live sessions
    server.drain_hooks.append(sessions.drain)  # SIGTERM: sessions end with "shutting_down", then the streams end OK
    return [GeneratorServicer(store, generator, identity, server.metrics, device, version), sessions]  # renders on its device too


def main() -> None:
    run_service(ServiceSettings.from_env("generator"), [generator_pb2_grpc.add_GeneratorServiceServicer_to_server,
                                                        session_pb2_grpc.add_GeneratorSessionServiceServicer_to_server], load)


if __name__ == "__main__":
    main()
