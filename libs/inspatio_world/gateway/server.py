"""The gateway's HTTP + WebSocket server: the viewer page and `/ws`, on one port.

Built on `websockets` (its asyncio server): one maintained, dependency-free library that speaks both
the WebSocket protocol and the few plain HTTP GETs a page needs (`process_request` answers them before
any handshake), so the gateway needs no web framework. Neither it nor aiohttp was installed before;
aiohttp would bring half a dozen packages for routing the gateway does not need.

Routes: `/` (the page), `/viewer.js`, `/healthz`, `/ws` (the session bridge, bridge.py). A WebSocket
from a page of another origin is refused (a site the user visits cannot drive a session through a
gateway on their machine). Plaintext only on loopback unless explicitly allowed, as for the gRPC ports
(rpc/tls.py); with a certificate and key it serves HTTPS/WSS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import logging
import signal
import ssl
from importlib import resources
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .bridge import DEFAULT_FPS, DEFAULT_MAX_UPLOAD, Bridge, SessionFactory

log = logging.getLogger(__name__)

STATIC = {
    "/": ("viewer.html", "text/html; charset=utf-8"),
    "/viewer.html": ("viewer.html", "text/html; charset=utf-8"),
    "/viewer.js": ("viewer.js", "text/javascript; charset=utf-8"),
}
MAX_MESSAGE = 16 << 20  # one WebSocket message from the browser (a command, or an upload chunk)


class GatewaySettingsError(ValueError):
    pass


def is_loopback(host: str) -> bool:
    from ..rpc.tls import is_loopback as address_is_loopback  # imports grpc: only when checking a bind

    return address_is_loopback(f"{host}:0")


def check_bind(host: str, tls: bool, allow_plaintext: bool) -> None:
    """rpc/tls.py's rule for the gateway's port: plaintext only on loopback, unless explicitly allowed."""
    if not tls and not allow_plaintext and not is_loopback(host):
        raise GatewaySettingsError(
            f"refusing to serve plaintext HTTP/WebSocket on {host}, which is not a loopback address (the page "
            "sends bearer tokens): give --tls-cert and --tls-key, listen on 127.0.0.1, or pass --allow-plaintext "
            "(only behind something that encrypts, e.g. a TLS-terminating proxy)"
        )


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise GatewaySettingsError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def static_file(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


def same_origin(request: Request) -> bool:
    """No Origin (not a browser) or the page's own origin (scheme aside: a proxy may terminate TLS)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == (request.headers.get("Host") or "").lower()


class Gateway:
    """The server: `await gateway.start(host, port)`, `gateway.port`, `await gateway.stop()`."""

    def __init__(self, open_session: SessionFactory, fps: float = DEFAULT_FPS, max_upload: int = DEFAULT_MAX_UPLOAD,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.open_session, self.fps, self.max_upload, self.ssl_context = open_session, fps, max_upload, ssl_context
        self.server: Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None, "not started"
        return self.server.sockets[0].getsockname()[1]

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context else "http"

    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> "Gateway":
        self.server = await serve(self._connection, host, port, process_request=self._process_request,
                                  ssl=self.ssl_context, max_size=MAX_MESSAGE, server_header="inspatio-gateway")
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def __aenter__(self) -> "Gateway":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            if not same_origin(request):
                return connection.respond(http.HTTPStatus.FORBIDDEN, "a page of another origin may not open a session here\n")
            return None  # the WebSocket handshake goes on
        if path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "ok\n")
        if path in STATIC:
            name, content_type = STATIC[path]
            body = static_file(name)
            response = connection.respond(http.HTTPStatus.OK, "")
            response = dataclasses.replace(response, body=body)
            for name, value in (("Content-Length", str(len(body))), ("Content-Type", content_type),
                                ("Cache-Control", "no-cache"), ("Referrer-Policy", "no-referrer")):
                _set_header(response, name, value)
            return response
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found: the viewer is at /\n")

    async def _connection(self, ws: ServerConnection) -> None:
        await Bridge(ws, self.open_session, fps=self.fps, max_upload=self.max_upload).run()


def _set_header(response: Response, name: str, value: str) -> None:
    if name in response.headers:  # Headers is a multi-dict: assigning adds
        del response.headers[name]
    response.headers[name] = value


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve_forever(gateway: Gateway, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT; then close the sockets (each open session is closed as its page's is)."""
    await gateway.start(host, port)
    log.info("gateway serving the viewer at %s://%s:%d/", gateway.scheme, host, gateway.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await gateway.stop()
