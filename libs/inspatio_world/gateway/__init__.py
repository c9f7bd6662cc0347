"""The viewer gateway: a web page that plays a live session and steers its camera, and the WebSocket
bridge (`/ws`) from the page to a session of the coordinator (`AsyncClient.session`).

`inspatio gateway --coordinator ADDRESS --listen 127.0.0.1:8080` serves it; `viewer_url(...)` is the
address of the page for one video (what `inspatio session VIDEO` opens). Protocol: protocol.py.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode


def viewer_url(gateway_address: str, video_uri: str, token: str | None = None) -> str:
    """The viewer page's URL for a video. The token goes in the fragment (#token=...): browsers never send
    a fragment to a server, so it stays out of access logs, proxies and Referer headers; the page sends it
    in its first WebSocket message. `gateway_address` is HOST:PORT or a full http(s):// URL."""
    base = gateway_address if "://" in gateway_address else f"http://{gateway_address}"
    url = f"{base.rstrip('/')}/?{urlencode({'video_uri': video_uri})}"
    if token:
        url += f"#token={quote(token, safe='')}"
    return url


def __getattr__(name: str):  # the server pulls in websockets: loaded when asked for
    if name in ("Gateway", "check_bind", "GatewaySettingsError"):
        from . import server

        return getattr(server, name)
    if name == "coordinator_sessions":
        from .sessions import coordinator_sessions

        return coordinator_sessions
    raise AttributeError(name)


__all__ = ["Gateway", "GatewaySettingsError", "check_bind", "coordinator_sessions", "viewer_url"]
