"""`inspatio gateway`: the viewer page and its WebSocket bridge to a coordinator's live sessions.

The gateway holds no token of its own: each browser sends its token (from the page's #token=...
fragment or its token field) and the gateway opens that browser's session with it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .. import envvars
from .job_commands import add_coordinator_tls_options

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_COORDINATOR = "127.0.0.1:50051"


def add_gateway_commands(commands: argparse._SubParsersAction) -> None:
    gateway = commands.add_parser(
        "gateway", help="serve the live-session viewer (a web page) and its WebSocket bridge to a coordinator",
        description="Serves the viewer at http://LISTEN/ and bridges each page's WebSocket (/ws) to a live "
                    "session at the coordinator, with the token the page sends. Plaintext only on loopback "
                    "unless --tls-cert/--tls-key or --allow-plaintext.")  # fmt: skip
    gateway.add_argument("--coordinator", default=DEFAULT_COORDINATOR, help=f"coordinator address (default {DEFAULT_COORDINATOR})")
    gateway.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT of the page and /ws (default {DEFAULT_LISTEN})")
    gateway.add_argument("--fps", type=float, default=16.0, help="pace at which the page plays frames (default 16, Wan2.1's)")
    gateway.add_argument("--max-upload-mb", type=int, default=1024, help="largest video a page may upload (default 1024 MiB)")
    served = gateway.add_argument_group("the gateway's own port")
    served.add_argument("--tls-cert", default=None, help="PEM certificate: serve HTTPS/WSS")
    served.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    served.add_argument("--allow-plaintext", action="store_true",
                        help=f"serve plaintext on a non-loopback address (only behind something that encrypts; "
                             f"or set {envvars.ALLOW_PLAINTEXT.name}=1)")  # fmt: skip
    add_coordinator_tls_options(gateway.add_argument_group("coordinator connection (TLS: default on for a non-loopback address)"))
    gateway.set_defaults(func=cmd_gateway)


def cmd_gateway(args: argparse.Namespace) -> int:
    from ..gateway.server import Gateway, GatewaySettingsError, check_bind, serve_forever, server_ssl_context, split_listen
    from ..gateway.sessions import coordinator_sessions
    from ..rpc.channels import ClientTLS

    try:
        host, port = split_listen(args.listen)
        if bool(args.tls_cert) != bool(args.tls_key):
            raise GatewaySettingsError("--tls-cert and --tls-key go together")
        allow_plaintext = args.allow_plaintext or envvars.get_flag(envvars.ALLOW_PLAINTEXT)
        check_bind(host, tls=bool(args.tls_cert), allow_plaintext=allow_plaintext)
        ssl_context = server_ssl_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        tls = ClientTLS.from_env(args.tls_ca, args.tls_client_cert, args.tls_client_key, args.tls_server_name)
    except (ValueError, OSError) as exc:
        print(f"inspatio gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateway = Gateway(coordinator_sessions(args.coordinator, tls=tls), fps=args.fps, max_upload=args.max_upload_mb << 20,
                      ssl_context=ssl_context)
    scheme = "https" if ssl_context else "http"
    shown = f"[{host}]" if ":" in host else host
    print(f"viewer at {scheme}://{shown}:{port}/?video_uri=... (add #token=... for a coordinator with tenants); "
          f"sessions go to {args.coordinator}", file=sys.stderr)
    try:
        asyncio.run(serve_forever(gateway, host, port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"inspatio gateway: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
