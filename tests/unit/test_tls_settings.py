"""TLS and token settings read from the environment: what each combination means, and the errors that
name the variable and the file (and never repeat a token)."""

from __future__ import annotations

import pytest

from inspatio_world import envvars
from inspatio_world.rpc.channels import ClientTLS
from inspatio_world.rpc.tls import ServerTLS, TLSSettingsError, check_plaintext_allowed, is_loopback
from inspatio_world.rpc.tokens import TokenError, client_token, service_token
from tests.support.pki import CertificateAuthority

SECRET = "s3cr3t-t0ken-value"
TLS_VARS = (envvars.TLS_CERT, envvars.TLS_KEY, envvars.TLS_CLIENT_CA, envvars.TLS_CA, envvars.TLS_CLIENT_CERT,
            envvars.TLS_CLIENT_KEY, envvars.TLS_SERVER_NAME, envvars.ALLOW_PLAINTEXT, envvars.TOKEN, envvars.TOKEN_FILE,
            envvars.SERVICE_TOKEN_FILE)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in TLS_VARS:
        monkeypatch.delenv(var.name, raising=False)


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"), "unit")


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:50051", True), ("127.3.4.5:1", True), ("[::1]:50051", True), ("localhost:50051", True),
    ("unix:/tmp/inspatio.sock", True), ("0.0.0.0:50051", False), ("[::]:50051", False), (":50051", False),
    ("10.0.0.7:50051", False), ("coordinator.inspatio:50051", False), ("localhost.evil.example:1", False),
])  # fmt: skip
def test_loopback_addresses(address, loopback):
    assert is_loopback(address) is loopback


def test_plaintext_off_loopback_only_when_allowed():
    check_plaintext_allowed("127.0.0.1:1", allow_plaintext=False)
    check_plaintext_allowed("0.0.0.0:1", allow_plaintext=True)
    with pytest.raises(TLSSettingsError, match="INSPATIO_ALLOW_PLAINTEXT=1"):
        check_plaintext_allowed("0.0.0.0:1", allow_plaintext=False)


def test_server_tls_from_the_environment(monkeypatch):
    assert ServerTLS.from_env() is None
    monkeypatch.setenv(envvars.TLS_CERT.name, "/certs/server.pem")
    with pytest.raises(TLSSettingsError, match="INSPATIO_TLS_CERT is set but INSPATIO_TLS_KEY is not"):
        ServerTLS.from_env()
    monkeypatch.setenv(envvars.TLS_KEY.name, "/certs/server.key")
    assert ServerTLS.from_env() == ServerTLS("/certs/server.pem", "/certs/server.key")
    monkeypatch.setenv(envvars.TLS_CLIENT_CA.name, "/certs/ca.pem")
    assert ServerTLS.from_env().mutual


def test_a_client_ca_alone_is_refused(monkeypatch):
    monkeypatch.setenv(envvars.TLS_CLIENT_CA.name, "/certs/ca.pem")
    with pytest.raises(TLSSettingsError, match="INSPATIO_TLS_CLIENT_CA needs INSPATIO_TLS_CERT"):
        ServerTLS.from_env()


def test_a_key_that_is_not_the_certificates_is_refused_naming_both(ca):
    server, other = ca.issue("server", ips=("127.0.0.1",)), ca.issue("other")
    with pytest.raises(TLSSettingsError) as refused:
        ServerTLS(str(server.cert), str(other.key)).credentials()
    assert f"INSPATIO_TLS_CERT={server.cert}" in str(refused.value) and f"INSPATIO_TLS_KEY={other.key}" in str(refused.value)


def test_unreadable_and_non_pem_files_are_named(ca, tmp_path):
    server = ca.issue("server2")
    not_pem = tmp_path / "ca.der"
    not_pem.write_bytes(b"\x30\x82\x01\x0a")
    with pytest.raises(TLSSettingsError, match=f"INSPATIO_TLS_KEY={tmp_path}/missing.key: cannot read it: No such file"):
        ServerTLS(str(server.cert), str(tmp_path / "missing.key")).credentials()
    with pytest.raises(TLSSettingsError, match=f"INSPATIO_TLS_CLIENT_CA={not_pem}: not a PEM file"):
        ServerTLS(str(server.cert), str(server.key), str(not_pem)).credentials()
    with pytest.raises(TLSSettingsError, match=f"INSPATIO_TLS_CA={server.key}: not a bundle of PEM CA certificates"):
        ClientTLS(True, str(server.key)).credentials()


def test_client_tls_from_the_environment(monkeypatch):
    by_address = ClientTLS.from_env()
    assert by_address.enabled is None
    assert not by_address.uses_tls("127.0.0.1:50051") and by_address.uses_tls("coordinator.example:443")
    monkeypatch.setenv(envvars.ALLOW_PLAINTEXT.name, "1")
    assert not ClientTLS.from_env().uses_tls("coordinator.example:443")
    monkeypatch.setenv(envvars.TLS_CA.name, "/certs/ca.pem")  # asking for TLS settings asks for TLS
    assert ClientTLS.from_env() == ClientTLS(None, "/certs/ca.pem")
    assert ClientTLS.from_env().uses_tls("127.0.0.1:50051")
    assert ClientTLS.from_env(ca="/flags/ca.pem").ca == "/flags/ca.pem"  # a CLI flag replaces its variable
    monkeypatch.setenv(envvars.TLS_CLIENT_KEY.name, "/certs/client.key")
    with pytest.raises(TLSSettingsError, match="INSPATIO_TLS_CLIENT_KEY is set but INSPATIO_TLS_CLIENT_CERT is not"):
        ClientTLS.from_env()


def test_the_sdk_tls_argument(monkeypatch):
    monkeypatch.setenv(envvars.TLS_CA.name, "/certs/ca.pem")
    assert ClientTLS.resolve(None) == ClientTLS(None, "/certs/ca.pem")
    assert ClientTLS(ca="/certs/ca.pem").uses_tls("localhost:50051")
    assert ClientTLS.resolve(False) == ClientTLS(enabled=False)  # the environment is ignored
    monkeypatch.delenv(envvars.TLS_CA.name)
    assert ClientTLS.resolve(True) == ClientTLS(enabled=True)  # TLS with gRPC's default roots
    assert ClientTLS.resolve(ClientTLS(True, "x.pem")) == ClientTLS(True, "x.pem")


def test_the_client_token_comes_from_the_argument_then_the_environment(monkeypatch, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("  file-token\n")
    assert client_token() == ""
    monkeypatch.setenv(envvars.TOKEN_FILE.name, str(token_file))
    assert client_token() == "file-token"  # stripped
    monkeypatch.setenv(envvars.TOKEN.name, "env-token")
    assert client_token() == "env-token"
    assert client_token(token_file=str(token_file)) == "file-token"
    assert client_token("argument-token", str(token_file)) == "argument-token"


def test_token_errors_name_the_source_and_never_the_token(monkeypatch, tmp_path):
    with pytest.raises(TokenError) as refused:
        client_token(f"{SECRET} with spaces")
    assert SECRET not in str(refused.value)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv(envvars.SERVICE_TOKEN_FILE.name, str(empty))
    with pytest.raises(TokenError, match=f"INSPATIO_SERVICE_TOKEN_FILE={empty} is empty"):
        service_token()
    monkeypatch.setenv(envvars.TOKEN_FILE.name, str(tmp_path / "absent"))
    with pytest.raises(TokenError, match="INSPATIO_TOKEN_FILE=.*absent: cannot read the token: No such file"):
        client_token()


def test_the_service_token(monkeypatch, tmp_path):
    assert service_token() == ""
    (tmp_path / "service").write_text(f"{SECRET}\n")
    monkeypatch.setenv(envvars.SERVICE_TOKEN_FILE.name, str(tmp_path / "service"))
    monkeypatch.setenv(envvars.TOKEN.name, "not-for-the-stages")
    assert service_token() == SECRET


def test_the_local_stack_passes_no_tls_setting_to_its_services():
    from inspatio_world.stack import inherited_environment

    environ = {var.name: "/certs/x.pem" for var in TLS_VARS if var.name.startswith("INSPATIO_TLS_")}
    inherited = inherited_environment({**environ, "HOME": "/home/me", envvars.STORE.name: "file:///s"})
    assert inherited == {"HOME": "/home/me", envvars.STORE.name: "file:///s"}
    assert len(environ) == 7  # every TLS variable, server and client side
