"""TLS, mutual TLS, the plaintext rule and bearer tokens, against real gRPC servers on 127.0.0.1.

Certificates are made here (tests/support/pki.py): a CA, a server certificate for 127.0.0.1 and
localhost, a client certificate, and an unrelated CA with a client certificate of its own. Tokens
are captured by a coordinator servicer that records each call's `authorization` metadata.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from inspatio_world import envvars
from inspatio_world.client import AsyncClient, Client
from inspatio_world.client.sample_video import write_sample_video
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import VideoRef
from inspatio_world.jobs.options import JobOptions
from inspatio_world.rpc.channels import ClientTLS
from inspatio_world.rpc.generated import caption_pb2, caption_pb2_grpc, coordinator_pb2, coordinator_pb2_grpc
from inspatio_world.rpc.logs import JsonFormatter
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.rpc.tls import ServerTLS, TLSSettingsError
from inspatio_world.stack import free_port, health
from inspatio_world.store.local import LocalStore
from services.coordinator.main import stage_client
from services.coordinator.servicer import CoordinatorServicer
from tests.support.pki import CertificateAuthority

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tok-3f9a1c77e2b84d05"
SERVICE_TOKEN = "svc-8d2e41b0c9a7f316"
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class Pki:
    def __init__(self, folder: Path) -> None:
        self.ca = CertificateAuthority(folder, "inspatio")
        self.server = self.ca.issue("server", dns=("localhost",), ips=("127.0.0.1",))
        self.named_server = self.ca.issue("named", dns=("coordinator.inspatio.internal",))  # not the address
        self.client = self.ca.issue("coordinator", client=True)
        self.other_ca = CertificateAuthority(folder, "other")
        self.other_client = self.other_ca.issue("intruder", client=True)

    def server_tls(self, mutual: bool = False) -> ServerTLS:
        return ServerTLS(str(self.server.cert), str(self.server.key), str(self.ca.cert) if mutual else "")

    def client_tls(self, ca: Path | None = None, client=None) -> ClientTLS:
        ca = ca or self.ca.cert
        if client is None:
            return ClientTLS(True, str(ca))
        return ClientTLS(True, str(ca), str(client.cert), str(client.key))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


class RecordingCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """Answers every call kind the SDK makes and records the `authorization` metadata it came with."""

    def __init__(self) -> None:
        self.seen: dict[str, str | None] = {}

    def _record(self, method: str, context) -> None:
        self.seen[method] = dict(context.invocation_metadata()).get("authorization")

    def ListJobs(self, request, context):
        self._record("ListJobs", context)
        return coordinator_pb2.ListJobsResponse()

    def GetJob(self, request, context):
        self._record("GetJob", context)
        context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")

    def WatchJob(self, request, context):
        self._record("WatchJob", context)
        yield coordinator_pb2.JobEvent(job_id=request.job_id, finished=_job(request.job_id))

    def SubmitJob(self, request_iterator, context):
        self._record("SubmitJob", context)
        for _ in request_iterator:
            pass
        return _job("submitted")


class RecordingCaption(caption_pb2_grpc.CaptionServiceServicer):
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def Caption(self, request, context):
        self.seen.append(dict(context.invocation_metadata()).get("authorization"))
        return caption_pb2.CaptionResponse(caption="a street")


def _job(job_id: str) -> coordinator_pb2.Job:
    return coordinator_pb2.Job(job_id=job_id, state=coordinator_pb2.JOB_STATE_SUCCEEDED)


@contextmanager
def serving(add, servicer, tls: ServerTLS | None = None):
    server = ServiceServer([(add, servicer)], metrics_address=None, tls=tls).start()
    server.set_serving()
    try:
        yield server
    finally:
        server.stop(grace=0)


def recording_coordinator(tls: ServerTLS | None = None):
    servicer = RecordingCoordinator()
    return servicer, serving(coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server, servicer, tls)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_sample_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 3, 32, 48)


# -- TLS and mutual TLS -------------------------------------------------------------------------------


def test_a_tls_coordinator_answers_an_sdk_client_that_trusts_its_ca(pki, tmp_path):
    class NoStages:
        model_versions = ("v1",)  # what it serves is known without calling a stage

        def __getattr__(self, name):
            raise AssertionError(f"stage {name!r} called")

    manager = JobManager(LocalStore(tmp_path, "inspatio-tls"), NoStages(), max_parallel_jobs=1)
    try:
        with serving(coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server, CoordinatorServicer(manager),
                     pki.server_tls()) as server:  # fmt: skip
            with Client(server.address, tls=pki.client_tls(), attempts=1) as client:
                assert client.list() == []
                with pytest.raises(grpc.RpcError) as refused:  # the real servicer answered, over TLS
                    client.get("no-such-job")
                assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            assert health(server.address, tls=pki.client_tls()) == "SERVING"
            # the port speaks TLS only: a plaintext client gets nowhere
            assert health(server.address, tls=ClientTLS(enabled=False)) == "UNREACHABLE"
            localhost = f"localhost:{server.port}"  # the certificate names localhost too
            assert health(localhost, tls=pki.client_tls()) == "SERVING"
    finally:
        manager.shutdown()


def test_a_client_trusting_another_ca_fails_the_handshake_and_the_server_keeps_serving(pki):
    servicer, server_context = recording_coordinator(pki.server_tls())
    with server_context as server:
        with Client(server.address, tls=pki.client_tls(ca=pki.other_ca.cert), attempts=1, token=TOKEN) as client:
            with pytest.raises(grpc.RpcError) as failed:
                client.list()
            assert failed.value.code() == UNAVAILABLE
        assert "ListJobs" not in servicer.seen  # nothing reached the servicer, token included
        with Client(server.address, tls=pki.client_tls(), attempts=1) as client:
            assert client.list() == []


def test_server_name_verifies_a_certificate_that_does_not_name_the_address(pki):
    tls = ServerTLS(str(pki.named_server.cert), str(pki.named_server.key))
    with recording_coordinator(tls)[1] as server:
        assert health(server.address, tls=pki.client_tls()) == "UNREACHABLE"  # 127.0.0.1 is not in it
        named = ClientTLS(True, str(pki.ca.cert), server_name="coordinator.inspatio.internal")
        assert health(server.address, tls=named) == "SERVING"


@pytest.mark.parametrize("client_cert", ["none", "other_ca"])
def test_mutual_tls_refuses_a_client_without_a_certificate_of_its_ca(pki, client_cert):
    servicer, server_context = recording_coordinator(pki.server_tls(mutual=True))
    with server_context as server:
        tls = pki.client_tls() if client_cert == "none" else pki.client_tls(client=pki.other_client)
        with Client(server.address, tls=tls, attempts=1) as client:
            with pytest.raises(grpc.RpcError) as refused:
                client.list()
            assert refused.value.code() == UNAVAILABLE
        assert servicer.seen == {}
        with Client(server.address, tls=pki.client_tls(client=pki.client), attempts=1) as client:
            assert client.list() == []  # the server still serves the right client
        assert "ListJobs" in servicer.seen


@pytest.mark.parametrize("transport", ["plaintext", "mutual_tls"])
def test_the_coordinators_stage_client_sends_the_service_token(pki, tmp_path, monkeypatch, transport):
    token_file = tmp_path / "service-token"
    token_file.write_text(SERVICE_TOKEN + "\n")
    caption = RecordingCaption()
    mutual = transport == "mutual_tls"
    with serving(caption_pb2_grpc.add_CaptionServiceServicer_to_server, caption, pki.server_tls(mutual=True) if mutual else None) as server:
        settings = [(envvars.CAPTION_ADDRESS, server.address), (envvars.SERVICE_TOKEN_FILE, token_file), (envvars.STAGE_WAIT_SECONDS, "10")]
        if mutual:  # what the coordinator of a TLS deployment is given
            settings += [(envvars.TLS_CA, pki.ca.cert), (envvars.TLS_CLIENT_CERT, pki.client.cert), (envvars.TLS_CLIENT_KEY, pki.client.key)]
        for var, value in settings:
            monkeypatch.setenv(var.name, str(value))
        stages = stage_client(LocalStore(tmp_path / "store", "inspatio-tls"))
        try:
            output = stages.caption(VideoRef("inputs/clip.mp4", "0" * 64), force=False)
        finally:
            stages.close()
    assert output.caption == "a street"
    assert caption.seen == [f"Bearer {SERVICE_TOKEN}"]


# -- plaintext ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", ":0", "10.20.30.40:0", "coordinator:0"])
def test_plaintext_off_loopback_is_refused_before_binding(address):
    with pytest.raises(TLSSettingsError, match=envvars.ALLOW_PLAINTEXT.name):
        ServiceServer([], address=address, metrics_address=None)


def test_plaintext_on_loopback_serves_and_says_so(caplog):
    caplog.set_level(logging.INFO, logger="inspatio_world.rpc.server")
    with recording_coordinator()[1] as server:
        assert health(server.address) == "SERVING"
    started = [r.getMessage() for r in caplog.records if r.getMessage().startswith("serving")]
    assert started and "plaintext" in started[0] and server.address in started[0]


def _start_coordinator(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "libs"), str(REPO)]),
                   envvars.STORE.name: (tmp_path / "store").as_uri(), envvars.METRICS_ADDRESS.name: f"127.0.0.1:{free_port()}",
                   **env}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "services.coordinator.main"], env=environment, cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def _last_message(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])["message"]


def test_a_service_asked_for_plaintext_off_loopback_refuses_to_start(tmp_path):
    done = _start_coordinator(tmp_path, **{envvars.GRPC_ADDRESS.name: f"0.0.0.0:{free_port()}"})
    assert done.returncode == 2
    message = _last_message(done.stderr)
    assert "coordinator: cannot start" in message and envvars.ALLOW_PLAINTEXT.name in message


def test_a_service_with_a_missing_certificate_file_names_the_variable_and_the_file(pki, tmp_path):
    missing = tmp_path / "nowhere" / "server.pem"
    done = _start_coordinator(tmp_path, **{envvars.GRPC_ADDRESS.name: f"127.0.0.1:{free_port()}",
                                           envvars.TLS_CERT.name: str(missing), envvars.TLS_KEY.name: str(pki.server.key)})  # fmt: skip
    assert done.returncode == 2
    message = _last_message(done.stderr)
    assert f"{envvars.TLS_CERT.name}={missing}" in message and "No such file" in message


# -- tokens -------------------------------------------------------------------------------------------


def _sync_calls(address: str, tls, clip: Path) -> None:
    with Client(address, token=TOKEN, tls=tls, attempts=1) as client:
        client.list()
        client.wait("job-1")  # WatchJob: a response stream
        client.submit(clip, JobOptions.for_trajectory("zoom_out_in.txt"))  # a request stream


def _async_calls(address: str, tls, clip: Path) -> None:
    async def calls() -> None:
        async with AsyncClient(address, token=TOKEN, tls=tls, attempts=1) as client:
            await client.list()
            await client.wait("job-1")
            await client.submit(clip, JobOptions.for_trajectory("zoom_out_in.txt"))

    asyncio.run(calls())


@pytest.mark.parametrize("transport", ["plaintext", "tls"])
@pytest.mark.parametrize("calls", [_sync_calls, _async_calls], ids=["sync", "async"])
def test_the_token_reaches_the_server_on_every_kind_of_call(pki, clip, transport, calls):
    server_tls, client_tls = (pki.server_tls(), pki.client_tls()) if transport == "tls" else (None, ClientTLS(enabled=False))
    servicer, server_context = recording_coordinator(server_tls)
    with server_context as server:
        calls(server.address, client_tls, clip)
    assert servicer.seen == {method: f"Bearer {TOKEN}" for method in ("ListJobs", "WatchJob", "SubmitJob")}


def test_without_a_token_no_authorization_is_sent(monkeypatch):
    monkeypatch.delenv(envvars.TOKEN.name, raising=False)
    monkeypatch.delenv(envvars.TOKEN_FILE.name, raising=False)
    servicer, server_context = recording_coordinator()
    with server_context as server, Client(server.address, attempts=1) as client:
        client.list()
    assert servicer.seen == {"ListJobs": None}


def test_the_cli_sends_the_token_file_over_tls(pki, tmp_path, monkeypatch, capsys):
    from inspatio_world.cli import main

    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    servicer, server_context = recording_coordinator(pki.server_tls())
    with server_context as server:
        assert main(["list", "--coordinator", server.address, "--tls-ca", str(pki.ca.cert), "--token-file", str(token_file)]) == 0
        with pytest.raises(SystemExit) as refused:  # the wrong CA: one line saying what to check
            main(["list", "--coordinator", server.address, "--tls-ca", str(pki.other_ca.cert)])
    assert servicer.seen == {"ListJobs": f"Bearer {TOKEN}"}
    assert "over TLS" in str(refused.value.code) and "--tls-ca" in str(refused.value.code)


def test_the_token_is_in_no_log_line_error_or_repr(pki, clip, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    servicer, server_context = recording_coordinator(pki.server_tls())
    with server_context as server:
        _sync_calls(server.address, pki.client_tls(), clip)
        with Client(server.address, token=TOKEN, tls=pki.client_tls(), attempts=1) as client:
            with pytest.raises(grpc.RpcError) as failed:
                client.get("job-1")
            assert repr(client).startswith("Client(") and TOKEN not in repr(client) and TOKEN not in repr(vars(client))

        async def async_repr() -> str:
            async with AsyncClient(server.address, token=TOKEN, tls=False) as async_client:
                return repr(async_client) + repr(vars(async_client))

        assert TOKEN not in asyncio.run(async_repr())
    assert servicer.seen["GetJob"] == f"Bearer {TOKEN}"  # it was sent
    assert TOKEN not in str(failed.value)
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    assert "ListJobs" in logged  # the server did log the calls
    captured = capfd.readouterr()
    assert TOKEN not in logged and TOKEN not in captured.out and TOKEN not in captured.err
