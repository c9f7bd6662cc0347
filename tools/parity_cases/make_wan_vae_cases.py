"""Write Wan VAE parity cases by running upstream's code, in the public pack's format.

    python tools/parity_cases/make_wan_vae_cases.py UPSTREAM_CHECKOUT OUT_DIR

UPSTREAM_CHECKOUT is a checkout of inspatio/inspatio-world; its `wan/modules/vae.py` (WanVAE_,
_video_vae) and `utils/wan_wrapper.py` (WanVAEWrapper) are imported from there and do all the
computing. The cases run a tiny VAE (real block structure, base dim 8, z_dim 16) with seeded random
weights, saved under the `Wan2.1_VAE.pth` key names and loaded by upstream's loader, on seeded
random inputs with frame counts and latent sizes other than the public pack's.

Base dim 8, not smaller: bf16 convolutions round differently per CPU kernel (AMX, AVX512-BF16,
AVX2), and at base dim 2-6 those differences grow past the public tolerance on some seeds; at 8
they stayed under 0.9 of it. The weights are stored once, in bf16 (the bf16 cases cast to it
anyway; the fp32 case computes in fp32 on the same values), and shared as the public pack does.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import types
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file

UPSTREAM = "wan/modules/vae.py WanVAE_ (encode/decode/cached_decode) via utils/wan_wrapper.py WanVAEWrapper"
LAYOUT = "video BCTHW; z_rand / latents BTCHW [1, L, 16, h, w]; recon BTCHW; stream_* BCTHW"
DIM, WEIGHT_SEED = 8, 8
ARCH = dict(z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[], temperal_downsample=[False, True, True], dropout=0.0)
# As the public pack's wan_vae / wan_vae_bf16 cases.
TOLERANCE = {torch.float32: {"atol": 1e-4, "rtol": 1e-4}, torch.bfloat16: {"atol": 0.1, "rtol": 0.05}}


@dataclass(frozen=True)
class Spec:
    name: str
    dtype: torch.dtype
    frames: int  # pixel frames of the encoded video (frames past the last group of 4 are dropped)
    latent_hw: tuple[int, int]
    latents: int  # latent frames of z_rand
    split: int  # stream_chunk1 decodes z_rand[:, :split], stream_chunk2 the rest
    seed: int


# No latent size of 1: oneDNN's bf16 stride-2 conv can return garbage when the encoder's last
# downsample sees a width or height of 2 (torch 2.13 CPU), in upstream and in this repo alike.
SPECS = (
    Spec("vae_d8_t10_3x5_bf16", torch.bfloat16, 10, (3, 5), 4, 1, 21),
    Spec("vae_d8_t17_3x3_bf16", torch.bfloat16, 17, (3, 3), 5, 3, 22),
    Spec("vae_d8_t14_5x3_bf16", torch.bfloat16, 14, (5, 3), 4, 2, 23),
    Spec("vae_d8_t13_3x3_fp32", torch.float32, 13, (3, 3), 4, 2, 24),
)


def import_upstream(root: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """(wan.modules.vae, utils.wan_wrapper) from the checkout. The wrapper module also imports the
    DiT, T5, tokenizer and scheduler modules (CUDA-only at import, unused by the VAE): stubbed."""
    stubs = {
        "wan": [], "wan.modules": [], "utils": [],
        "utils.scheduler": ["SchedulerInterface", "FlowMatchScheduler"],
        "wan.modules.tokenizers": ["HuggingfaceTokenizer"],
        "wan.modules.model": ["WanModel"],
        "wan.modules.t5": ["umt5_xxl"],
        "wan.modules.causal_model": ["CausalWanModel"],
    }  # fmt: skip
    for name, attrs in stubs.items():
        module = sys.modules[name] = types.ModuleType(name)
        module.__path__ = []
        for attr in attrs:
            setattr(module, attr, None)

    def load(name: str, relpath: str) -> types.ModuleType:
        spec = importlib.util.spec_from_file_location(name, root / relpath)
        module = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load("wan.modules.vae", "wan/modules/vae.py"), load("utils.wan_wrapper", "utils/wan_wrapper.py")


def random_weights(vae_module: types.ModuleType) -> dict[str, torch.Tensor]:
    """Upstream's module at its default init, then norm gains, biases and the (zero-initialised)
    attention projection randomised; rounded to bf16 so that every case can use the same values."""
    torch.manual_seed(WEIGHT_SEED)
    state = {}
    for key, value in vae_module.WanVAE_(dim=DIM, **ARCH).state_dict().items():
        if key.endswith("gamma"):
            value = 1 + 0.2 * torch.randn_like(value)
        elif key.endswith("bias"):
            value = 0.05 * torch.randn_like(value)
        elif key.endswith("proj.weight"):
            value = 0.1 * torch.randn_like(value)
        state[key] = value.to(torch.bfloat16).contiguous()
    return state


def run_upstream(wrapper_module, vae_module, pth: Path, spec: Spec) -> tuple[dict, dict, dict]:
    """(inputs, outputs, model config) of one case, in the case dtype: a bf16 case's outputs are
    upstream's `.float()` of bf16 values, so storing them as bf16 loses nothing."""
    wrapper_module._video_vae = partial(vae_module._video_vae, dim=DIM, **ARCH)  # the wrapper passes only z_dim
    wrapper = wrapper_module.WanVAEWrapper(str(pth.parent))
    wrapper.model.to(spec.dtype)  # bf16 variants cast after loading, as the pipeline does

    gen = torch.Generator().manual_seed(spec.seed)
    h, w = spec.latent_hw
    video = (torch.rand(1, 3, spec.frames, 8 * h, 8 * w, generator=gen) * 2 - 1).to(spec.dtype)
    z_rand = torch.randn(1, spec.latents, 16, h, w, generator=gen).to(spec.dtype)
    scale = [wrapper.mean.to(dtype=spec.dtype), 1.0 / wrapper.std.to(dtype=spec.dtype)]  # as decode_to_pixel
    z = z_rand.permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        latents = wrapper.encode_to_latent(video)
        outputs = {"latents": latents, "recon": wrapper.decode_to_pixel(latents.to(spec.dtype))}
        # To keep cases small, decode_rand(_raw) of the public cases is left out: upstream decodes
        # latent by latent, so it is the two streamed chunks concatenated (clamped).
        wrapper.model.clear_cache()
        outputs["stream_chunk1"] = wrapper.model.cached_decode(z[:, :, : spec.split], scale).float()
        outputs["stream_chunk2"] = wrapper.model.cached_decode(z[:, :, spec.split :], scale).float()
    for key, value in outputs.items():
        outputs[key] = value.to(spec.dtype).contiguous()
        assert torch.equal(outputs[key].float(), value), f"{spec.name}: {key} does not fit {spec.dtype}"
    config = {"dim": DIM, **ARCH, "latent_mean": wrapper.mean.tolist(), "latent_std": wrapper.std.tolist()}
    return {"video": video, "z_rand": z_rand}, outputs, config


def write_case(folder: Path, spec: Spec, inputs: dict, outputs: dict, config: dict, weights: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    dtype = lambda t: str(t).removeprefix("torch.")
    shapes = lambda tensors: {k: {"shape": list(v.shape), "dtype": dtype(v.dtype)} for k, v in tensors.items()}
    meta = {
        "case": spec.name,
        "upstream": UPSTREAM,
        "description": (
            f"Generated by tools/parity_cases/make_wan_vae_cases.py: tiny WanVAE_ (base dim {DIM}, z_dim 16) with "
            f"seeded random weights (bf16 values) loaded by upstream _video_vae and cast to {dtype(spec.dtype)}; a "
            f"video of {spec.frames} frames, latents {spec.latent_hw[0]}x{spec.latent_hw[1]}, input seed {spec.seed}. "
            f"Outputs as in the public wan_vae case, stored losslessly in the case dtype: encode_to_latent, "
            f"decode_to_pixel of those latents, and cached_decode of z_rand[:, :{spec.split}] then of the rest "
            f"after one clear_cache."
        ),
        "layout": LAYOUT,
        "dtype": dtype(spec.dtype),
        "weights": weights,
        "tolerance": TOLERANCE[spec.dtype],
        "torch": torch.__version__,
        # bf16 results depend on the CPU's convolution kernels (AMX or not): say where these came from.
        "cpu": f"{torch.backends.cpu.get_cpu_capability()}, AMX {torch.cpu._is_amx_tile_supported()}, "
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')}",
        "inputs": shapes(inputs),
        "outputs": shapes(outputs),
    }
    (folder / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / "model_config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(inputs, str(folder / "inputs.safetensors"))
    save_file(outputs, str(folder / "outputs.safetensors"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path, help="checkout of inspatio/inspatio-world")
    parser.add_argument("out", type=Path, help="pack folder to write the cases into")
    args = parser.parse_args(argv)
    vae_module, wrapper_module = import_upstream(args.upstream.resolve())
    state = random_weights(vae_module)
    owner = SPECS[0].name  # the case whose folder holds the shared weights
    with tempfile.TemporaryDirectory() as tmp:
        pth = Path(tmp) / "Wan2.1_VAE.pth"
        torch.save({k: v.float() for k, v in state.items()}, pth)
        for spec in SPECS:
            inputs, outputs, config = run_upstream(wrapper_module, vae_module, pth, spec)
            weights = "weights.safetensors" if spec.name == owner else f"../{owner}/weights.safetensors"
            write_case(args.out / spec.name, spec, inputs, outputs, config, f"{weights} (Wan2.1_VAE.pth key names, bf16 values)")
            print(f"wrote {spec.name}")
    save_file(state, str(args.out / owner / "weights.safetensors"))


if __name__ == "__main__":
    main()
