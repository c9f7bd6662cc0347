"""Flow-matching noise schedule of the generator (upstream `FlowMatchScheduler`, shift 5), in float32.

sigma_i = shift*s_i / (1 + (shift-1)*s_i) with s_i = 1 - i/1000 (i = 0..999), t_i = 1000*sigma_i.
Timesteps are mapped to table entries by nearest value (first minimum on ties), as upstream does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class FlowMatchSchedule:
    shift: float = 5.0
    sigmas: torch.Tensor = field(init=False, repr=False)
    timesteps: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = torch.linspace(1.0, 0.0, TRAIN_TIMESTEPS + 1)[:-1]
        sigmas = self.shift * s / (1 + (self.shift - 1) * s)
        object.__setattr__(self, "sigmas", sigmas)
        object.__setattr__(self, "timesteps", sigmas * TRAIN_TIMESTEPS)

    def training_weights(self) -> torch.Tensor:
        """Upstream's `linear_timesteps_weights` (used only in training; kept for parity checks)."""
        x = self.timesteps
        y = torch.exp(-2 * ((x - TRAIN_TIMESTEPS / 2) / TRAIN_TIMESTEPS) ** 2)
        y_shifted = y - y.min()
        return y_shifted * (TRAIN_TIMESTEPS / y_shifted.sum())

    def warped_steps(self, steps: list[int]) -> torch.Tensor:
        """Map nominal steps (e.g. [1000, 750, 500, 250]) onto the shifted table, float32."""
        extended = torch.cat([self.timesteps, torch.zeros(1)])
        return extended[TRAIN_TIMESTEPS - torch.tensor(steps, dtype=torch.long)]

    def index_of(self, timestep: torch.Tensor) -> torch.Tensor:
        """Nearest table index per timestep; [n] -> [n] int64."""
        table = self.timesteps.to(device=timestep.device, dtype=torch.promote_types(timestep.dtype, torch.float32))
        return torch.argmin((table.unsqueeze(0) - timestep.unsqueeze(1)).abs(), dim=1)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """(1-sigma)*x0 + sigma*noise in float32, cast to noise's dtype. x0, noise: [n, ...], timestep [n]."""
        sigma = self.sigmas.to(noise.device)[self.index_of(timestep)].view(-1, *[1] * (x0.dim() - 1))
        return ((1 - sigma) * x0 + sigma * noise).type_as(noise)

    def flow_to_x0(self, flow: torch.Tensor, x_t: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """x0 = x_t - sigma*flow in float64, cast back to flow's dtype. flow, x_t: [n, ...], timestep [n]."""
        timesteps = self.timesteps.to(flow.device, torch.float64)
        index = torch.argmin((timesteps.unsqueeze(0) - timestep.to(torch.float64).unsqueeze(1)).abs(), dim=1)
        sigma = self.sigmas.to(flow.device, torch.float64)[index].view(-1, *[1] * (flow.dim() - 1))
        return (x_t.double() - sigma * flow.double()).to(flow.dtype)
