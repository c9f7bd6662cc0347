"""`inspatio token new`: a fresh random bearer token, and the sha256 line for the tenants file.

The token goes to the client (a file for --token-file / INSPATIO_TOKEN_FILE, or INSPATIO_TOKEN); only
its digest goes into the tenants file (INSPATIO_TENANTS_FILE) or a Helm value, which hold no secrets.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys

TOKEN_BYTES = 32  # 256 random bits


def add_token_commands(commands: argparse._SubParsersAction) -> None:
    token = commands.add_parser("token", help="bearer tokens for clients (tenants) and the coordinator")
    actions = token.add_subparsers(dest="token_command", required=True)
    new = actions.add_parser("new", help="print a fresh random token and the token_sha256 entry for the tenants file")
    new.set_defaults(func=_new)


def new_token() -> tuple[str, str]:
    """A fresh token (URL-safe text) and its lower-case hex sha256 (what rpc/auth.py compares)."""
    from ..rpc.auth import token_digest  # here: the model commands' CLI imports nothing of rpc/

    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, token_digest(token)


def _new(args: argparse.Namespace) -> int:
    token, digest = new_token()
    # The two values on stdout (for scripts), what to do with them on stderr.
    print(f"token: {token}")
    print(f"token_sha256: {json.dumps(digest)}")
    print("The token goes to the client only (a file for --token-file / INSPATIO_TOKEN_FILE) and is not stored "
          "anywhere; add token_sha256 to the tenant's \"token_sha256\" list in INSPATIO_TENANTS_FILE.", file=sys.stderr)
    return 0
