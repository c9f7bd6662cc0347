"""The stages in this process (one machine, no gRPC): the `StageClient` the local runner uses.

Every weight file is checked when this object is made (cheap failures first); each model is
loaded on first use, so a job whose stages all hit the cache loads nothing. One process may serve
both model versions (`model_versions`): each version's generator is loaded on its first job.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import Iterator

import torch

from .. import envvars
from ..models.captioner import Captioner
from ..models.depth import DepthEstimator, DepthSettings
from ..pipeline.generator import VideoGenerator
from ..pipeline.models import GeneratorModels
from ..pipeline.weights import WeightsFolder
from ..refusals import VersionNotServed
from ..stages.caption import CaptionOutput, run_caption
from ..stages.depth import DepthOutput, run_depth
from ..stages.generate import BlockPublished, GenerateInputs, GenerateOutput, run_generate
from ..stages.image_job_render import run_image_render
from ..stages.identity import ModelIdentity, weights_identity
from ..stages.render import RenderOptions, RenderOutput, run_render
from ..stages.render_feed import run_render_and_generate
from ..stopping import StopCheck, go_on
from ..store.base import ObjectStore
from .budgets import StageCall
from .manifest import VideoRef
from .runner import ImagesRendered


def caption_identity(weights: WeightsFolder) -> ModelIdentity:
    return weights_identity("caption", [weights.florence_dir], weights.is_random)


def depth_identity(weights: WeightsFolder) -> ModelIdentity:
    return weights_identity("depth", [weights.da3_dir], weights.is_random)


def generator_identity(weights: WeightsFolder, autoencoders: tuple[str, ...], fp8: bool = False) -> ModelIdentity:
    """FP8 gives other numbers from the same files: a separate identity, so cached outputs never mix.
    Likewise FP8 self-attention ($INSPATIO_ATTENTION=fp8); the other kernels differ only by rounding."""
    files = [weights.dit_file, weights.dit_config_file, weights.text_encoder_file, weights.tokenizer_dir]
    files += [weights.vae_file] if "wan_vae" in autoencoders else []
    files += [weights.taehv_file] if "taehv" in autoencoders else []
    name = "generator" + ("-fp8" if fp8 else "") + ("-fp8-attention" if envvars.get(envvars.ATTENTION) == "fp8" else "")
    return weights_identity(name, files, weights.is_random)


def check_caption_weights(weights: WeightsFolder) -> None:
    weights.check_caption()


def check_depth_weights(weights: WeightsFolder) -> None:
    weights.check_depth()


def load_estimator(weights: WeightsFolder, device: torch.device) -> DepthEstimator:
    """DA3 with upstream's settings, or the tiny profile's smaller ones."""
    return DepthEstimator.from_folder(weights.da3_dir, DepthSettings(**weights.profile.get("depth", {})), device=device)


class LocalStages:
    def __init__(self, store: ObjectStore, weights: WeightsFolder, device: torch.device | None = None,
                 autoencoders: tuple[str, ...] = ("wan_vae", "taehv"), compile_dit: bool | None = None,
                 fp8: bool = False, stream_render: bool = True, model_versions: tuple[str, ...] = ("v1",)) -> None:  # fmt: skip
        """`stream_render`: full jobs render inside the generate call, block by block (first frames
        sooner, same outputs); False renders the whole video first. `model_versions`: the releases
        whose jobs this process runs (each one's DiT file is checked now)."""
        check_caption_weights(weights)
        check_depth_weights(weights)
        for version in model_versions:
            for name in autoencoders:
                weights.for_version(version).check(name)
        self.model_versions = tuple(model_versions)
        self.store = store
        self.weights = weights
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.autoencoders = autoencoders
        self.compile_dit, self.fp8 = compile_dit, fp8
        self.streams_render = stream_render  # the runner's switch (jobs/runner.py StageClient)
        self.identities = {
            "caption": caption_identity(weights),
            "depth": depth_identity(weights),
            **{_generator_name(v): generator_identity(weights.for_version(v), autoencoders, fp8) for v in model_versions},
        }
        self._generators: dict[str, VideoGenerator] = {}
        # One call per stage at a time (a model, its KV cache and CUDA graphs serve one job at a
        # time); different stages may run side by side, as caption and depth do.
        self._locks = {stage: threading.Lock() for stage in ("caption", "depth", "render", "generate")}

    @cached_property
    def captioner(self) -> Captioner:
        return Captioner.from_folder(self.weights.florence_dir, device=self.device)

    @cached_property
    def estimator(self) -> DepthEstimator:
        return load_estimator(self.weights, self.device)

    @property
    def generator(self) -> VideoGenerator:
        """The first served version's generator."""
        return self.generator_for(self.model_versions[0])

    def generator_for(self, model_version: str) -> VideoGenerator:
        """The generator of `model_version`, loaded on first use; VersionNotServed for a version not served."""
        if model_version not in self.model_versions:
            raise VersionNotServed(f"model_version {model_version!r} is not served here (served: {', '.join(self.model_versions)})")
        if model_version not in self._generators:
            weights = self.weights.for_version(model_version)
            models = GeneratorModels.load(weights, self.device, self.autoencoders, compile_dit=self.compile_dit, fp8=self.fp8)
            self._generators[model_version] = VideoGenerator(models)
        return self._generators[model_version]

    # In process, a call's budget and the job's cancel are checked by the stage itself, between its
    # batches, chunks and blocks (`StageCall.check`).
    def caption(self, video: VideoRef, force: bool, call: StageCall | None = None) -> CaptionOutput:
        with self._locks["caption"]:
            return run_caption(self.store, video.key, video.sha256, self.captioner, self.identities["caption"], force,
                               _check(call))  # fmt: skip

    def depth(self, video: VideoRef, force: bool, call: StageCall | None = None, model_version: str = "v1") -> DepthOutput:
        with self._locks["depth"]:
            return run_depth(self.store, video.key, video.sha256, self.estimator, self.identities["depth"], force, _check(call),
                             model_version)  # fmt: skip

    def render_images(self, images: tuple[VideoRef, ...], options: RenderOptions, force: bool, call: StageCall | None = None,
                      geometry: VideoRef | None = None) -> ImagesRendered:  # fmt: skip
        keys = [image.key for image in images]
        if geometry is not None:  # the job's own depth and cameras: no model
            output = run_image_render(self.store, keys, options.trajectory, options.trajectory_text, geometry_key=geometry.key,
                                      device=self.device, force=force, should_stop=_check(call))  # fmt: skip
            return ImagesRendered(output, "")
        with self._locks["depth"]:  # DA3 over the views, then the render: the depth model's lock
            output = run_image_render(self.store, keys, options.trajectory, options.trajectory_text, self.estimator,
                                      self.identities["depth"], device=self.device, force=force, should_stop=_check(call))  # fmt: skip
        return ImagesRendered(output, self.identities["depth"].digest)

    def render(self, video: VideoRef, depth_key: str, options: RenderOptions, force: bool,
               call: StageCall | None = None) -> RenderOutput:  # fmt: skip
        with self._locks["render"]:
            return run_render(self.store, video.sha256, depth_key, options, self.device, force, _check(call))

    def generate(self, inputs: GenerateInputs, force: bool, call: StageCall | None = None) -> Iterator[BlockPublished | GenerateOutput]:
        with self._locks["generate"]:
            version = inputs.model_version
            yield from run_generate(self.store, inputs, self.generator_for(version), self.identities[_generator_name(version)], force,
                                    _check(call))  # fmt: skip

    def render_and_generate(self, video: VideoRef, depth_key: str, options: RenderOptions, prompt: str, seed: int,
                            autoencoder: str, force: bool, call: StageCall | None = None,
                            ) -> Iterator[RenderOutput | BlockPublished | GenerateOutput]:  # fmt: skip
        with self._locks["generate"]:  # the render's own work holds no model: the generator's lock is the one
            version = options.model_version
            yield from run_render_and_generate(self.store, video.key, video.sha256, depth_key, options, prompt, seed, autoencoder,
                                               self.generator_for(version), self.identities[_generator_name(version)], self.device,
                                               force, _check(call))  # fmt: skip


def _generator_name(model_version: str) -> str:
    """Key of a version's generator identity in `LocalStages.identities`: "generator" for v1 (as before)."""
    return "generator" if model_version == "v1" else f"generator-{model_version}"


def _check(call: StageCall | None) -> StopCheck:
    return call.check if call is not None else go_on
