"""`inspatio ...` command line.

Building the parser imports nothing heavy: torch, transformers and gRPC load inside the commands that
need them, so `--help` answers at once, and `bench`, `parity` and `generate` import no gRPC, store or
service code (they run on a bare GPU image that has only torch).
"""

from __future__ import annotations

import argparse
import sys

from .gateway_commands import add_gateway_commands
from .job_commands import add_job_commands
from .model_commands import add_model_commands
from .session_commands import add_session_commands
from .token_commands import add_token_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspatio", description="InSpatio-World: camera-controlled video re-rendering")
    commands = parser.add_subparsers(dest="command", required=True)
    add_job_commands(commands)
    add_model_commands(commands)
    add_session_commands(commands)
    add_token_commands(commands)
    add_gateway_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
