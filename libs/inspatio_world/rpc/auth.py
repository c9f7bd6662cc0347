"""Bearer-token authentication of application RPCs (server side).

A client sends the gRPC metadata `authorization: Bearer <token>`. A TokenVerifier knows only the
SHA-256 digests of the tokens it accepts (a tenants file holds no secrets) and maps each to a
principal: a tenant (jobs/tenants.py) at the coordinator, SERVICE_PRINCIPAL at a stage service, which
accepts only the coordinator's service token (INSPATIO_SERVICE_TOKEN_FILE).

The interceptor (rpc/interceptors.py) authenticates every application call before its servicer runs
and sets `current_principal()` for the call; health and reflection stay open (probes send no token).
A token never appears in a log line or an error message: refusals say what is wrong, never with what.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ..refusals import Unauthenticated
from .tokens import read_token_file, service_token

SERVICE_PRINCIPAL = "coordinator"  # who a stage service's token stands for
SCHEME = "bearer"
# The client side's names (the SDK and CLI read them; named here as text so the server needs no client code).
HOW_TO_PASS = "pass a token: the CLI's --token-file flag, INSPATIO_TOKEN_FILE (a file holding it) or INSPATIO_TOKEN"

_PRINCIPAL: ContextVar[Any] = ContextVar("inspatio_principal", default=None)


def current_principal() -> Any:
    """Who made the RPC being served: what its token maps to (a Tenant at the coordinator,
    SERVICE_PRINCIPAL at a stage service); None when the server authenticates nobody (open mode)."""
    return _PRINCIPAL.get()


@contextmanager
def principal_set(principal: Any) -> Iterator[None]:
    """`current_principal()` is `principal` inside (for one call, on the thread that serves it)."""
    _PRINCIPAL.set(principal)
    try:
        yield
    finally:
        # set, not reset: a streaming call's generator may be finalised on another thread, whose
        # context never held the token reset would need. Each call sets its own principal anyway.
        _PRINCIPAL.set(None)


def principal_label(principal: Any) -> str:
    """How logs name a principal: its `subject` ("tenant:acme") if it has one, else its text ("coordinator")."""
    return str(getattr(principal, "subject", principal))


def token_digest(token: str) -> str:
    """The lower-case hex SHA-256 of a token's UTF-8 bytes: what configuration holds instead of it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenVerifier:
    """Maps presented tokens to principals by their digests, in constant time per accepted token."""

    def __init__(self, entries: Iterable[tuple[str, Any]]) -> None:
        """`entries`: (sha256 hex digest of a token, the principal it stands for)."""
        self._entries: list[tuple[bytes, Any]] = []
        for digest, principal in entries:
            if len(digest) != 64 or digest.strip("0123456789abcdef"):
                raise ValueError("a token digest must be 64 lower-case hex digits (sha256)")
            self._entries.append((bytes.fromhex(digest), principal))
        if not self._entries:
            raise ValueError("a token verifier needs at least one token digest")

    @classmethod
    def for_token_file(cls, path: str | Path, principal: Any = SERVICE_PRINCIPAL) -> "TokenVerifier":
        return cls([(token_digest(read_token_file(str(path), "the token file")), principal)])

    def verify(self, token: str) -> Any:
        """The principal of `token`, else Unauthenticated. Every entry is compared, with
        hmac.compare_digest, whatever matched: the time taken says nothing about which one did."""
        presented = hashlib.sha256(token.encode("utf-8")).digest()
        found = None
        for digest, principal in self._entries:
            if hmac.compare_digest(presented, digest):
                found = principal
        if found is None:
            raise Unauthenticated("the token is not valid here (unknown or revoked); " + HOW_TO_PASS)
        return found

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Any:
        """The principal of a call's `authorization: Bearer <token>` metadata, else Unauthenticated."""
        return self.verify(bearer_token(metadata))


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token of the one `authorization: Bearer <token>` entry of `metadata`, else Unauthenticated."""
    values = [value for key, value in (metadata or ()) if key.lower() == "authorization"]
    if not values:
        raise Unauthenticated("this service requires authentication: no 'authorization' metadata; " + HOW_TO_PASS)
    if len(values) > 1:
        raise Unauthenticated("more than one 'authorization' metadata entry; send exactly one: Bearer <token>")
    value = values[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != SCHEME or not token or " " in token:
        raise Unauthenticated("malformed 'authorization' metadata: expected 'Bearer <token>'; " + HOW_TO_PASS)
    return token


def service_verifier_from_env() -> TokenVerifier | None:
    """A stage service's verifier: only the coordinator's token (INSPATIO_SERVICE_TOKEN_FILE), or None
    (no authentication) when the variable is unset."""
    token = service_token()
    return TokenVerifier([(token_digest(token), SERVICE_PRINCIPAL)]) if token else None
