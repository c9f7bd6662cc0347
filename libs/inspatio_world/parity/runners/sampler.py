"""Parity runner: the whole block-causal loop (context pass + 4 denoising steps per block)."""

from __future__ import annotations

import torch

from ...models.sampler import BlockSampler, Conditioning, GeneratorNoise, RecordedNoise, SamplerConfig, StepTrace
from ...models.scheduler import FlowMatchSchedule
from ..case import ParityCase
from . import runner
from .dit import load_case_dit


@runner("pipeline/causal_inference.py CausalInferencePipeline.inference")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    args = case.meta["args"]
    dit = load_case_dit(case, device)
    config = SamplerConfig(
        frames_per_block=int(args.get("num_frame_per_block", 3)),
        denoising_steps=tuple(args.get("denoising_step_list", (1000, 750, 500, 250))),
        warp_steps=bool(args.get("warp_denoising_step", True)),
    )
    sampler = BlockSampler(dit, config, FlowMatchSchedule(shift=float(args.get("timestep_shift", 5.0))))
    inputs = case.inputs
    expected_steps = inputs.get("denoising_timesteps")
    if expected_steps is not None and not torch.equal(sampler.timesteps, expected_steps):
        raise ValueError(f"denoising timesteps {sampler.timesteps.tolist()} != case {expected_steps.tolist()}")

    def latent(name: str) -> torch.Tensor:
        return inputs[name].to(device, case.dtype)

    cond = Conditioning(inputs["prompt_embeds"].to(device, case.dtype), latent("ref_latent"), latent("render_latent"), latent("mask_latent"))
    seed = case.meta.get("seed_noise")
    if seed is not None and device.type == "cpu":
        # Replaying the seed checks the draw order too; the recorded draws are the fallback elsewhere.
        noise = GeneratorNoise(torch.Generator().manual_seed(int(seed)))
    else:
        noise = RecordedNoise(inputs["noise"], inputs["renoise_draws"])
    trace: list[StepTrace] = []
    final = sampler.generate(cond, noise, trace)
    return {
        "final_latents": final,
        "step_inputs": torch.stack([s.noisy for s in trace]),
        "step_x0": torch.stack([s.x0 for s in trace]),
    }
