"""TLS of a service's gRPC port, and the rule that keeps plaintext on loopback.

A service with INSPATIO_TLS_CERT and INSPATIO_TLS_KEY serves TLS; with INSPATIO_TLS_CLIENT_CA as well,
mutual TLS (a client must present a certificate that CA signed: the stages accept only the coordinator).
Without TLS a service listens only on loopback, unless INSPATIO_ALLOW_PLAINTEXT=1: a port reachable
from the network is never plaintext by accident. Every PEM file is read and checked at start-up, and a
problem is a `TLSSettingsError` naming the variable and the file, before any port is bound.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from .. import envvars
from ..envvars import EnvVar

LOCAL_SCHEMES = ("unix:", "unix-abstract:")  # sockets on this machine only


class TLSSettingsError(ValueError):
    """A TLS setting that cannot work: a missing or unreadable PEM file, a key not matching its certificate,
    half of a pair, or plaintext where it is not allowed."""


def is_loopback(address: str) -> bool:
    """Whether a host:port (or unix: socket) address is reachable from this machine only."""
    if address.startswith(LOCAL_SCHEMES):
        return True
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost, or "" (every interface)
        return False


def check_plaintext_allowed(address: str, allow_plaintext: bool) -> None:
    """Refuse a plaintext port on a non-loopback address, unless explicitly allowed."""
    if not allow_plaintext and not is_loopback(address):
        raise TLSSettingsError(
            f"refusing to serve plaintext gRPC on {address}, which is not a loopback address: set "
            f"{envvars.TLS_CERT.name} and {envvars.TLS_KEY.name} to serve TLS, listen on 127.0.0.1, or set "
            f"{envvars.ALLOW_PLAINTEXT.name}=1 (only behind something that encrypts, e.g. a service mesh)"
        )


def read_pem(path: str, var: EnvVar) -> bytes:
    """The bytes of a PEM file; a clear error naming `var` and the file if it is missing or not PEM."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise TLSSettingsError(f"{var.name}={path}: cannot read it: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise TLSSettingsError(f"{var.name}={path}: not a PEM file (no -----BEGIN line)")
    return data


def read_key_pair(cert: str, cert_var: EnvVar, key: str, key_var: EnvVar) -> tuple[bytes, bytes]:
    """(private key, certificate chain) PEM bytes, checked to belong together: gRPC itself would only fail
    at the first handshake, with nothing naming the files."""
    cert_pem, key_pem = read_pem(cert, cert_var), read_pem(key, key_var)
    try:
        # an encrypted key gets an empty password (never a prompt on the terminal) and fails here
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            Path(cert).expanduser(), Path(key).expanduser(), password=lambda: b""
        )
    except ssl.SSLError as exc:
        raise TLSSettingsError(
            f"{cert_var.name}={cert} and {key_var.name}={key} are not a matching PEM certificate and "
            f"unencrypted private key ({exc.reason or exc})"
        ) from None
    return key_pem, cert_pem


def read_ca(path: str, var: EnvVar) -> bytes:
    """A PEM bundle of CA certificates, checked to hold at least one."""
    pem = read_pem(path, var)
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise TLSSettingsError(f"{var.name}={path}: not a bundle of PEM CA certificates ({exc})") from None
    return pem


def require_pair(first: str, first_var: EnvVar, second: str, second_var: EnvVar) -> None:
    """A certificate and its key are set together or not at all."""
    if bool(first) != bool(second):
        given, missing = (first_var, second_var) if first else (second_var, first_var)
        raise TLSSettingsError(f"{given.name} is set but {missing.name} is not: set both, or neither")


@dataclass(frozen=True)
class ServerTLS:
    """The PEM files of a TLS port (paths; read when the server is built)."""

    cert: str
    key: str
    client_ca: str = ""  # set: mutual TLS

    @classmethod
    def from_env(cls) -> ServerTLS | None:
        """TLS from INSPATIO_TLS_CERT/KEY/CLIENT_CA, or None (plaintext) when none is set."""
        cert, key, client_ca = (envvars.get(v).strip() for v in (envvars.TLS_CERT, envvars.TLS_KEY, envvars.TLS_CLIENT_CA))
        require_pair(cert, envvars.TLS_CERT, key, envvars.TLS_KEY)
        if not cert:
            if client_ca:
                raise TLSSettingsError(f"{envvars.TLS_CLIENT_CA.name} needs {envvars.TLS_CERT.name} and {envvars.TLS_KEY.name}")
            return None
        return cls(cert, key, client_ca)

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca)

    def credentials(self) -> grpc.ServerCredentials:
        pair = read_key_pair(self.cert, envvars.TLS_CERT, self.key, envvars.TLS_KEY)
        client_ca = read_ca(self.client_ca, envvars.TLS_CLIENT_CA) if self.client_ca else None
        return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)
