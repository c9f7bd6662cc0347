"""Parity runner: the flow-matching table, warped steps, nearest-timestep lookup, add_noise, flow->x0."""

from __future__ import annotations

import torch

from ...models.scheduler import FlowMatchSchedule
from ..case import ParityCase
from . import runner


@runner("utils/scheduler.py FlowMatchScheduler")
def run(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    args = case.meta.get("args", {})
    schedule = FlowMatchSchedule(shift=float(args.get("shift", 5.0)))
    inputs = {k: v.to(device) for k, v in case.inputs.items()}
    t = inputs["timesteps_query"]
    out = {
        "sigmas": schedule.sigmas,
        "timesteps": schedule.timesteps,
        "linear_timesteps_weights": schedule.training_weights(),
        "warped_denoising_timesteps": schedule.warped_steps(list(args.get("denoising_step_list", [1000, 750, 500, 250]))),
        "table_index": schedule.index_of(t),
    }
    for suffix, dtype in (("", torch.float32), ("_bf16", torch.bfloat16)):
        noisy = schedule.add_noise(inputs["x0"].to(dtype), inputs["noise"].to(dtype), t)
        out[f"add_noise{suffix}"] = noisy
        out[f"flow_to_x0{suffix}"] = schedule.flow_to_x0(inputs["flow_pred"].to(dtype), noisy, t)
    return out
