"""The SDK stays light: importing it loads no model code (a client machine may have no torch)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "av", "numpy", "scipy", "transformers")


def test_importing_the_sdk_loads_no_torch_av_or_numpy():
    code = ("import sys, inspatio_world.client; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
