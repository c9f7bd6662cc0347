"""The gateway's default session factory: the async SDK against one coordinator, with the browser's token.

The SDK is imported when a session opens (not with this module), so the gateway and its page load
without gRPC. The gateway never lends its own token: the SDK falls back to INSPATIO_TOKEN /
INSPATIO_TOKEN_FILE when given none, so a browser that sent no token is refused while either is set
in the gateway's environment (a coordinator without tenants needs no token at all).
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from .. import envvars


class NoTokenError(PermissionError):
    pass


def coordinator_sessions(address: str, tls: Any = None):
    """A factory `open_session(token=..., video=... | video_uri=..., **options)` for the Bridge."""

    @contextlib.asynccontextmanager
    async def open_session(token: str | None = None, video: str | None = None, **options: Any) -> AsyncIterator[Any]:
        if not token and (envvars.get(envvars.TOKEN).strip() or envvars.get(envvars.TOKEN_FILE).strip()):
            raise NoTokenError("this gateway needs the browser's token: add #token=... to the page's address or enter it")
        from ..client import AsyncClient

        async with AsyncClient(address, token=token, tls=tls) as client:
            args = (video,) if video is not None else ()
            async with client.session(*args, **options) as session:
                yield session

    return open_session
