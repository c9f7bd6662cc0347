"""What the CLI loads: `--help` loads nothing heavy (it answers at once), and the model commands
(bench, parity, generate) load no gRPC, store or service code, so they run on a bare GPU image
(torch only; its grpcio is older than the stubs need)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

COMMANDS = ("up", "run", "submit", "watch", "get", "cancel", "list", "parity", "generate", "bench", "weights", "token",
            "session", "gateway")
HEAVY = ("torch", "grpc", "transformers", "av", "minio", "numpy", "scipy")
# gRPC and everything built on it: the stubs, the store, jobs beyond their options, the SDK, services
NETWORKED = ("grpc", "grpc_health", "grpc_reflection", "grpc_status", "minio", "services", "inspatio_world.rpc",
             "inspatio_world.store", "inspatio_world.client", "inspatio_world.stages", "inspatio_world.stack",
             "inspatio_world.jobs.manager", "inspatio_world.jobs.runner", "inspatio_world.jobs.manifest")


def _python(code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_loads_nothing_heavy(command):
    argv = [command, "--help"] if command else ["--help"]
    done = _python(f"""
        import sys
        from inspatio_world.cli import main
        try:
            main({argv!r})
        except SystemExit:
            pass
        print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))
    """)
    assert done.returncode == 0, done.stderr
    assert "usage: inspatio" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_model_commands_run_without_grpc(parity_pack, tmp_path):
    done = _python(f"""
        import importlib.abc, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if any(name == b or name.startswith(b + ".") for b in {NETWORKED!r}):
                    raise ImportError("refused: " + name)

        sys.meta_path.insert(0, Refuse())
        import torch
        from inspatio_world.cli import main
        import inspatio_world.bench.generator, inspatio_world.bench.conditioning, inspatio_world.bench.pipeline
        assert main(["parity", {str(parity_pack)!r}, "--case", "scheduler"]) == 0
        assert main(["generate", "--frames", "9", "--height", "32", "--width", "48", "--out", {str(tmp_path / 'out')!r}]) == 0
        if not torch.cuda.is_available():
            assert main(["bench", "generator"]) == 2  # a clear refusal, after importing the whole benchmark
        print("ok")
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
    assert (tmp_path / "out" / "pred.mp4").is_file()

