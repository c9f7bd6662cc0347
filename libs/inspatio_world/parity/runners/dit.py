"""Parity runners for the causal DiT: a plain forward, and a context (KV write) pass then a denoising pass."""

from __future__ import annotations

import torch

from ...models.checkpoints import load_dit
from ...models.dit import CausalDiT, DiTConfig
from ...models.kv_cache import KVCache
from ...models.scheduler import FlowMatchSchedule
from ..case import ParityCase
from . import runner


def load_case_dit(case: ParityCase, device: torch.device) -> CausalDiT:
    """The case's tiny DiT through the real loader: fp32 weights cast to the case dtype."""
    return load_dit(case.weights_path, DiTConfig.from_dict(case.model_config), dtype=case.dtype, device=device)


def _mode(kv_size) -> str:
    length = kv_size[1]
    return "write" if length < 0 else "read" if length > 0 else "none"


@runner("wan/modules/causal_model.py CausalWanModel.forward")
def run_forward(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    args = case.meta.get("args", {})
    if _mode(args.get("kv_size", [0, 0])) != "none":
        raise ValueError("plain-forward cases must use kv_size (0, 0)")
    dit = load_case_dit(case, device)
    x, context = (case.inputs[k].to(device, case.dtype) for k in ("x", "context"))
    t = case.inputs["t"].to(device)  # timesteps stay float32, as upstream passes them (937.5 is not a bf16 value)
    out = dit(x, t, dit.embed_text(context), time_offset=int(args.get("freqs_offset", 0)))
    return {"out": out}


@runner("utils/wan_wrapper.py WanDiffusionWrapper.forward")
def run_context_then_denoise(case: ParityCase, device: torch.device) -> dict[str, torch.Tensor]:
    args = case.meta["args"]
    dit = load_case_dit(case, device)
    cfg = dit.config
    inputs = {k: v.to(device) for k, v in case.inputs.items()}
    context_frames = inputs["context_frames"].to(case.dtype)  # BFCHW, 36 channels
    noisy = inputs["noisy"].to(case.dtype)
    render = inputs["render_block"].to(case.dtype)
    batch, _, _, height, width = noisy.shape
    tokens_per_frame = (height // cfg.patch_size[1]) * (width // cfg.patch_size[2])
    kv_rows = case.outputs["kv_cache_k"].shape[2]
    cache = KVCache(cfg.num_layers, batch, kv_rows + noisy.shape[1] * tokens_per_frame, cfg.num_heads, cfg.head_dim, case.dtype, device)
    text = dit.embed_text(inputs["prompt_embeds"].to(case.dtype))

    ctx_args, den_args = args["context"], args["denoise"]
    ctx_t = torch.full((batch,), int(ctx_args.get("timestep", 0)), dtype=torch.long, device=device)
    context_out = dit(
        context_frames.permute(0, 2, 1, 3, 4).contiguous(), ctx_t, text,
        cache=cache, cache_mode=_mode(ctx_args["kv_size"]), time_offset=int(ctx_args.get("freqs_offset", 0)),
    )
    snapshot_k = cache.k[:, :, :kv_rows].clone()
    snapshot_v = cache.v[:, :, :kv_rows].clone()

    timestep = inputs["timestep_denoise"]  # [B, F] float32
    flow = dit(
        noisy.permute(0, 2, 1, 3, 4).contiguous(), timestep, text, render=render.permute(0, 2, 1, 3, 4).contiguous(),
        cache=cache, cache_mode=_mode(den_args["kv_size"]), cache_length=int(den_args["kv_size"][1]),
        time_offset=int(den_args.get("freqs_offset", 6)),
    ).permute(0, 2, 1, 3, 4)
    x0 = FlowMatchSchedule().flow_to_x0(flow.flatten(0, 1), noisy.flatten(0, 1), timestep.flatten(0, 1)).unflatten(0, flow.shape[:2])
    return {
        "context_pass_out": context_out.permute(0, 2, 1, 3, 4),
        "kv_cache_k": snapshot_k,
        "kv_cache_v": snapshot_v,
        "flow_pred": flow,
        "x0_pred": x0,
    }
