"""Where a client's bearer token comes from. A token is a secret: no message here repeats it.

SDK and CLI: the argument, else a token file argument, else INSPATIO_TOKEN, else the file named by
INSPATIO_TOKEN_FILE. The coordinator: the file named by INSPATIO_SERVICE_TOKEN_FILE (sent to the stages).
A file's content is stripped (a trailing newline is not part of the token).
"""

from __future__ import annotations

import re
from pathlib import Path

from .. import envvars
from ..envvars import EnvVar

# What an HTTP header value may hold without escaping (visible ASCII): anything else would make gRPC
# refuse the metadata with an error that quotes it.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


class TokenError(ValueError):
    pass


def _checked(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise TokenError(f"{source} is empty")
    if not _HEADER_SAFE.fullmatch(token):
        raise TokenError(f"the token from {source} has spaces or characters other than visible ASCII")
    return token


def read_token_file(path: str, source: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise TokenError(f"{source}={path}: cannot read the token: {reason}") from None
    return _checked(text, f"{source}={path}")


def _from_file_var(var: EnvVar) -> str:
    path = envvars.get(var).strip()
    return read_token_file(path, var.name) if path else ""


def client_token(token: str | None = None, token_file: str | None = None) -> str:
    """The SDK's/CLI's token ("" for none): argument, token file argument, INSPATIO_TOKEN, INSPATIO_TOKEN_FILE."""
    if token:
        return _checked(token, "the token argument")
    if token_file:
        return read_token_file(token_file, "the token file")
    if envvars.get(envvars.TOKEN).strip():
        return _checked(envvars.get(envvars.TOKEN), envvars.TOKEN.name)
    return _from_file_var(envvars.TOKEN_FILE)


def service_token() -> str:
    """The coordinator's token for the stages ("" when INSPATIO_SERVICE_TOKEN_FILE is unset)."""
    return _from_file_var(envvars.SERVICE_TOKEN_FILE)
