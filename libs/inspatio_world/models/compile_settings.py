"""Process-wide torch.compile settings shared by every compiled model (DiT blocks, autoencoder steps)."""

from __future__ import annotations

import os

RECOMPILE_LIMIT = 64  # graphs per compiled function: a few per shape, a few shapes per process


def configure_compile() -> None:
    """A persistent kernel cache (a restarted process skips most compilation), eager rounding kept
    (`emulate_precision_casts`: bf16/fp16 intermediates round as in eager, so compiled results
    stay those of the plain path up to reduction order), and room for every pass shape's graph."""
    import torch._dynamo
    import torch._inductor.config

    from .. import envvars

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.expanduser(envvars.get(envvars.COMPILE_CACHE)))
    torch._inductor.config.fx_graph_cache = True
    torch._inductor.config.emulate_precision_casts = True
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
