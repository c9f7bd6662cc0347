"""The one place gRPC channels are opened (sync and grpc.aio): TLS or plaintext, and the bearer token.

    tls = ClientTLS.from_env()                      # INSPATIO_TLS_CA, _CLIENT_CERT/_KEY, _SERVER_NAME
    channel = open_channel("coordinator.example:443", tls, token=client_token())

TLS is used when asked for (`ClientTLS(enabled=True)`, or any TLS setting given: a CA, a client
certificate, a server name); otherwise a loopback address is plaintext and any other address TLS with
gRPC's default roots, unless INSPATIO_ALLOW_PLAINTEXT=1 (the services' own rule, seen from the client).

The token goes out on every call as `authorization: Bearer <token>`. Over TLS it is a call credential;
gRPC refuses call credentials on a plaintext channel, so there an interceptor adds the header. The
token is held only by those objects, whose repr does not show it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import grpc

from .. import envvars
from .tls import TLSSettingsError, is_loopback, read_ca, read_key_pair, require_pair

ChannelOptions = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class ClientTLS:
    """How a client verifies the server, and the certificate it presents (paths of PEM files)."""

    enabled: bool | None = None  # None: TLS if any setting below is given, or the address is not loopback
    ca: str = ""  # "": gRPC's default roots
    client_cert: str = ""  # with client_key: mutual TLS
    client_key: str = ""
    server_name: str = ""  # the name to verify instead of the address's host

    @classmethod
    def from_env(cls, ca: str | None = None, client_cert: str | None = None, client_key: str | None = None,
                 server_name: str | None = None) -> ClientTLS:  # fmt: skip
        """The INSPATIO_TLS_* client variables; an argument that is not None (a CLI flag) replaces its variable."""
        def pick(value: str | None, var: envvars.EnvVar) -> str:
            return (envvars.get(var) if value is None else value).strip()

        tls = cls(None, pick(ca, envvars.TLS_CA), pick(client_cert, envvars.TLS_CLIENT_CERT),
                  pick(client_key, envvars.TLS_CLIENT_KEY), pick(server_name, envvars.TLS_SERVER_NAME))  # fmt: skip
        require_pair(tls.client_cert, envvars.TLS_CLIENT_CERT, tls.client_key, envvars.TLS_CLIENT_KEY)
        if not tls.configured and envvars.get_flag(envvars.ALLOW_PLAINTEXT):
            return replace(tls, enabled=False)
        return tls

    @classmethod
    def resolve(cls, tls: ClientTLS | bool | None) -> ClientTLS:
        """An SDK's `tls` argument: None reads the environment, True forces TLS (still with the
        environment's CA and certificates), False forces plaintext, a ClientTLS is used as it is."""
        if isinstance(tls, ClientTLS):
            return tls
        if tls is False:
            return cls(enabled=False)
        from_env = cls.from_env()
        return replace(from_env, enabled=True) if tls else from_env

    @property
    def configured(self) -> bool:
        """Whether any TLS setting is given (asking for one asks for TLS)."""
        return bool(self.ca or self.client_cert or self.server_name)

    def uses_tls(self, address: str) -> bool:
        if self.enabled is not None:
            return self.enabled
        return self.configured or not is_loopback(address)

    def describe(self, address: str) -> str:
        """"TLS", "mutual TLS" or "plaintext", for messages."""
        if not self.uses_tls(address):
            return "plaintext"
        return "mutual TLS" if self.client_cert else "TLS"

    def credentials(self) -> grpc.ChannelCredentials:
        if self.enabled is False:
            raise TLSSettingsError("TLS credentials asked of plaintext settings")
        ca = read_ca(self.ca, envvars.TLS_CA) if self.ca else None
        key = cert = None
        if self.client_cert:
            key, cert = read_key_pair(self.client_cert, envvars.TLS_CLIENT_CERT, self.client_key, envvars.TLS_CLIENT_KEY)
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    def options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def open_channel(address: str, tls: ClientTLS | None = None, token: str = "", options: ChannelOptions = ()) -> grpc.Channel:
    """A channel to `address`, TLS or plaintext as `tls` says (default: by the address), sending `token`."""
    tls = tls or ClientTLS()
    if tls.uses_tls(address):
        return grpc.secure_channel(address, _secure_credentials(tls, token), options=[*options, *tls.options()])
    channel = grpc.insecure_channel(address, options=list(options))
    return grpc.intercept_channel(channel, _BearerInterceptor(token)) if token else channel


def open_aio_channel(address: str, tls: ClientTLS | None = None, token: str = "", options: ChannelOptions = ()) -> grpc.aio.Channel:
    """As `open_channel`, for grpc.aio."""
    tls = tls or ClientTLS()
    if tls.uses_tls(address):
        return grpc.aio.secure_channel(address, _secure_credentials(tls, token), options=[*options, *tls.options()])
    interceptors = _aio_bearer_interceptors(token) if token else None
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)


def _secure_credentials(tls: ClientTLS, token: str) -> grpc.ChannelCredentials:
    credentials = tls.credentials()
    # access_token_call_credentials sends "authorization: Bearer <token>"
    return grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token)) if token else credentials


def _authorization(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: tuple) -> None:
        self.method, self.timeout, self.credentials = details.method, details.timeout, details.credentials
        self.wait_for_ready, self.compression = details.wait_for_ready, getattr(details, "compression", None)
        self.metadata = metadata


class _BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor,
):  # fmt: skip
    """Adds the token to every call of a plaintext channel."""

    def __init__(self, token: str) -> None:
        self._header = _authorization(token)

    def __repr__(self) -> str:
        return "<bearer token interceptor>"

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _CallDetails(details, (*(details.metadata or ()), self._header))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


class _AioBearer:
    def __init__(self, token: str) -> None:
        self._header = _authorization(token)

    def __repr__(self) -> str:
        return "<bearer token interceptor>"

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return details._replace(metadata=grpc.aio.Metadata(*(details.metadata or ()), self._header))


# grpc.aio files an interceptor under one kind of call only: one class per kind
class _AioUnaryUnary(_AioBearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._details(details), request)


class _AioUnaryStream(_AioBearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._details(details), request)


class _AioStreamUnary(_AioBearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)


class _AioStreamStream(_AioBearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, details, request_iterator):
        return await continuation(self._details(details), request_iterator)


def _aio_bearer_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    return [kind(token) for kind in (_AioUnaryUnary, _AioUnaryStream, _AioStreamUnary, _AioStreamStream)]
