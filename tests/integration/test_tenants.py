"""Tokens and tenants against a real coordinator gRPC server on 127.0.0.1 (issue 11).

The coordinator servicer runs in process over a JobManager whose stages wait until the test ends
(accepted jobs stay running), with a LocalStore and with a SeaweedFS S3 store. Callers send the
bearer token as gRPC metadata themselves. Checked: calls without a valid token are UNAUTHENTICATED;
a tenant sees, watches, cancels and lists only its own jobs (another tenant's job id is NOT_FOUND,
worded exactly like an id nobody used) and never another's output URLs; video_uri is limited to the
tenant's own uploads and configured prefixes (PERMISSION_DENIED); the tenant's limits apply; health
and reflection need no token; stage services accept only the coordinator's service token; and no
token ever reaches a log line.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inspatio_world.client import write_sample_video
from inspatio_world.jobs import manifest as manifests
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.manifest import SUCCEEDED, Manifest, VideoRef
from inspatio_world.jobs.options import JobOptions
from inspatio_world.jobs.tenants import Tenants
from inspatio_world.refusals import QuotaExceeded
from inspatio_world.rpc.auth import SERVICE_PRINCIPAL, TokenVerifier, current_principal, token_digest
from inspatio_world.rpc.generated import caption_pb2, caption_pb2_grpc, common_pb2, coordinator_pb2, coordinator_pb2_grpc
from inspatio_world.rpc.server import ServiceServer
from inspatio_world.stack import free_port
from inspatio_world.store.local import LocalStore
from services.coordinator.servicer import CoordinatorServicer
from tests.support.blocked_stages import BlockedStages

REPO = Path(__file__).resolve().parents[2]
BUCKET = "inspatio-tenants"
TIMEOUT = 10
RELEASE_AFTER_S = 60
UNAUTHENTICATED, NOT_FOUND = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND
PERMISSION_DENIED, RESOURCE_EXHAUSTED = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED
# Fresh per run, so finding one in a log line can only mean it was logged.
TOKENS = {name: secrets.token_urlsafe(32) for name in ("acme", "bravo", "busy", "small")}
SMALL_UPLOAD_BYTES = 1000  # the sample clip is larger
SMALL_OUTPUT_FRAMES = 100  # the sample job would generate 117


def _tenants() -> Tenants:
    def tenant(name: str, **extra) -> dict:
        return {"name": name, "token_sha256": [token_digest(TOKENS[name])], **extra}

    return Tenants.from_document({"tenants": [
        tenant("acme", input_prefixes=[f"s3://{BUCKET}/datasets/acme/"]),
        tenant("bravo"),
        tenant("busy", max_concurrent_jobs=1),
        tenant("small", input_prefixes=[f"s3://{BUCKET}/datasets/small/"], max_upload_bytes=SMALL_UPLOAD_BYTES,
               max_output_frames=SMALL_OUTPUT_FRAMES),
    ]})  # fmt: skip


@dataclass
class Coordinator:
    store: object
    manager: JobManager
    channel: grpc.Channel
    server: ServiceServer

    def stub(self) -> coordinator_pb2_grpc.CoordinatorServiceStub:
        return coordinator_pb2_grpc.CoordinatorServiceStub(self.channel)


@pytest.fixture(scope="module")
def video_bytes(tmp_path_factory) -> bytes:
    return write_sample_video(tmp_path_factory.mktemp("clip") / "clip.mp4", 3, 32, 48).read_bytes()


@pytest.fixture(scope="module", params=["local", "s3"])
def coordinator(request, tmp_path_factory, video_bytes) -> Iterator[Coordinator]:
    if request.param == "local":
        store = LocalStore(tmp_path_factory.mktemp("store"), BUCKET)
    else:
        store = request.getfixturevalue("seaweedfs").make_store(BUCKET)
    store.put_bytes("notes/readme.txt", b"not a video")
    for tenant in ("acme", "small"):
        store.put_bytes(f"datasets/{tenant}/clip.mp4", video_bytes, content_type="video/mp4")
    stages = BlockedStages(RELEASE_AFTER_S)
    manager = JobManager(store, stages, max_parallel_jobs=8)
    tenants = _tenants()
    server = ServiceServer([(coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server, CoordinatorServicer(manager, tenants))],
                           metrics_address=None, verifier=TokenVerifier(tenants.token_digests())).start()  # fmt: skip
    server.set_serving()
    channel = grpc.insecure_channel(server.address)
    try:
        yield Coordinator(store, manager, channel, server)
    finally:
        stages.release.set()
        channel.close()
        server.stop(grace=0)
        manager.shutdown()


def auth(tenant: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {TOKENS[tenant]}")]


def _spec(**video) -> coordinator_pb2.SubmitJobRequest:
    options = common_pb2.JobOptions(trajectory=common_pb2.Trajectory(shipped_name="zoom_out_in.txt"))
    return coordinator_pb2.SubmitJobRequest(spec=coordinator_pb2.JobSpec(options=options, **video))


def upload(coordinator: Coordinator, tenant: str, video_bytes: bytes, name: str = "clip.mp4") -> coordinator_pb2.Job:
    messages = [_spec(upload_name=name), coordinator_pb2.SubmitJobRequest(chunk=video_bytes)]
    return coordinator.stub().SubmitJob(iter(messages), timeout=TIMEOUT, metadata=auth(tenant))


def submit_uri(coordinator: Coordinator, tenant: str, key: str) -> coordinator_pb2.Job:
    return coordinator.stub().SubmitJob(iter([_spec(video_uri=f"s3://{BUCKET}/{key}")]), timeout=TIMEOUT,
                                        metadata=auth(tenant))  # fmt: skip


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def job_calls(stub: coordinator_pb2_grpc.CoordinatorServiceStub, job_id: str):
    """(name, call(metadata)) for every job-id method."""
    return [
        ("GetJob", lambda md: stub.GetJob(coordinator_pb2.GetJobRequest(job_id=job_id), timeout=TIMEOUT, metadata=md)),
        ("CancelJob", lambda md: stub.CancelJob(coordinator_pb2.CancelJobRequest(job_id=job_id), timeout=TIMEOUT, metadata=md)),
        ("WatchJob", lambda md: list(stub.WatchJob(coordinator_pb2.WatchJobRequest(job_id=job_id), timeout=TIMEOUT, metadata=md))),
    ]  # fmt: skip


# -- authentication -----------------------------------------------------------------------------


def test_calls_without_a_valid_token_are_unauthenticated(coordinator, video_bytes):
    stub = coordinator.stub()
    calls = [*job_calls(stub, "no-such-job"),
             ("ListJobs", lambda md: stub.ListJobs(coordinator_pb2.ListJobsRequest(), timeout=TIMEOUT, metadata=md)),
             ("SubmitJob", lambda md: stub.SubmitJob(iter([_spec(upload_name="clip.mp4"),
                                                           coordinator_pb2.SubmitJobRequest(chunk=video_bytes)]),
                                                     timeout=TIMEOUT, metadata=md))]  # fmt: skip
    unknown = secrets.token_urlsafe(32)
    bad = {
        "none": None,
        "unknown token": [("authorization", f"Bearer {unknown}")],
        "a digest, not the token": [("authorization", f"Bearer {token_digest(TOKENS['acme'])}")],
        "other scheme": [("authorization", f"Basic {TOKENS['acme']}")],
        "no token": [("authorization", "Bearer ")],
        "two words": [("authorization", f"Bearer {TOKENS['acme']} extra")],
        "twice": [("authorization", f"Bearer {TOKENS['acme']}"), ("authorization", f"Bearer {TOKENS['bravo']}")],
    }
    uploads_before = sorted(info.key for info in coordinator.store.list(""))
    for method, call in calls:
        for why, metadata in bad.items():
            error = refused(lambda: call(metadata))
            assert error.code() == UNAUTHENTICATED, (method, why, error.details())
            assert not any(token in error.details() for token in (*TOKENS.values(), unknown)), (method, why)
        error = refused(lambda: call(None))
        assert all(hint in error.details() for hint in ("--token-file", "INSPATIO_TOKEN_FILE", "INSPATIO_TOKEN")), error.details()
    assert sorted(info.key for info in coordinator.store.list("")) == uploads_before  # nothing stored


def test_health_and_reflection_need_no_token(coordinator):
    health = health_pb2_grpc.HealthStub(coordinator.channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(coordinator.channel)
    answers = list(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                   timeout=TIMEOUT))  # fmt: skip
    names = {service.name for service in answers[0].list_services_response.service}
    assert "inspatio.world.v1.CoordinatorService" in names


# -- isolation ------------------------------------------------------------------------------------


def test_a_tenants_objects_live_under_its_own_prefix(coordinator, video_bytes):
    job = upload(coordinator, "acme", video_bytes)
    assert job.video.key.startswith("tenants/acme/uploads/")
    assert coordinator.store.exists(f"tenants/acme/jobs/{job.job_id}/manifest.json")
    assert not coordinator.store.exists(f"jobs/{job.job_id}/manifest.json")
    assert manifests.load(coordinator.store, job.job_id, "acme").tenant == "acme"


def test_another_tenants_job_is_not_found_exactly_like_a_missing_one(coordinator, video_bytes):
    stub = coordinator.stub()
    theirs = upload(coordinator, "bravo", video_bytes).job_id
    missing = "0123456789abcdef"
    for (method, call), (_, call_missing) in zip(job_calls(stub, theirs), job_calls(stub, missing)):
        error, error_missing = refused(lambda: call(auth("acme"))), refused(lambda: call_missing(auth("acme")))
        assert error.code() == error_missing.code() == NOT_FOUND, method
        assert error.details().replace(theirs, missing) == error_missing.details(), method
    mine = {job.job_id for job in stub.ListJobs(coordinator_pb2.ListJobsRequest(), timeout=TIMEOUT, metadata=auth("acme")).jobs}
    theirs_listed = {job.job_id for job in stub.ListJobs(coordinator_pb2.ListJobsRequest(), timeout=TIMEOUT,
                                                         metadata=auth("bravo")).jobs}  # fmt: skip
    assert theirs in theirs_listed and theirs not in mine
    assert mine and mine.isdisjoint(theirs_listed)
    # acme's CancelJob did not touch it: still running for bravo
    job = stub.GetJob(coordinator_pb2.GetJobRequest(job_id=theirs), timeout=TIMEOUT, metadata=auth("bravo"))
    assert job.state in (coordinator_pb2.JOB_STATE_QUEUED, coordinator_pb2.JOB_STATE_RUNNING)


def test_output_urls_are_only_in_the_owners_answers(coordinator):
    store = coordinator.store
    output = "cache/generate/" + "e" * 64 + "/pred.mp4"
    store.put_bytes(output, b"frames")
    video = VideoRef(f"tenants/bravo/uploads/{'f' * 64}/clip.mp4", "f" * 64, 1)
    done = manifests.save(store, Manifest.new(JobOptions(trajectory_name="zoom_out_in.txt"), video, "bravo")
                          .with_(state=SUCCEEDED, outputs={"pred": output}))  # fmt: skip
    stub = coordinator.stub()
    owners = stub.GetJob(coordinator_pb2.GetJobRequest(job_id=done.job_id), timeout=TIMEOUT, metadata=auth("bravo"))
    assert owners.outputs.pred.key == output and owners.outputs.pred.url
    assert refused(lambda: stub.GetJob(coordinator_pb2.GetJobRequest(job_id=done.job_id), timeout=TIMEOUT,
                                       metadata=auth("acme"))).code() == NOT_FOUND  # fmt: skip
    listed = stub.ListJobs(coordinator_pb2.ListJobsRequest(limit=1000), timeout=TIMEOUT, metadata=auth("acme"))
    assert output not in str(listed)


def test_video_uri_is_limited_to_the_tenants_uploads_and_prefixes(coordinator, video_bytes):
    bravos_upload = upload(coordinator, "bravo", video_bytes, name="bravo.mp4").video.key
    acmes_upload = upload(coordinator, "acme", video_bytes, name="acme.mp4").video.key
    for key in (bravos_upload, "tenants/bravo/uploads/never-stored.mp4", "notes/readme.txt", "nothing/here.mp4",
                "datasets/acme-evil/clip.mp4", "datasets/small/clip.mp4", "cache/generate/x/pred.mp4"):
        error = refused(lambda: submit_uri(coordinator, "acme", key))
        assert error.code() == PERMISSION_DENIED, (key, error.details())
        assert f"s3://{BUCKET}/tenants/acme/uploads/" in error.details() and f"s3://{BUCKET}/datasets/acme/" in error.details()
    assert submit_uri(coordinator, "acme", acmes_upload).video.key == acmes_upload
    assert submit_uri(coordinator, "acme", "datasets/acme/clip.mp4").video.key == "datasets/acme/clip.mp4"


def test_every_tenants_unfinished_jobs_are_resumed(coordinator, video_bytes):
    job = upload(coordinator, "bravo", video_bytes)
    coordinator.store.delete(f"tenants/bravo/jobs/{job.job_id}/lease.json")  # as if its coordinator had died
    stages = BlockedStages(RELEASE_AFTER_S)
    other = JobManager(coordinator.store, stages, max_parallel_jobs=1, lease_seconds=60)
    try:
        assert job.job_id in other.resume_unfinished()
        assert coordinator.store.exists(f"tenants/bravo/jobs/{job.job_id}/lease.json")
    finally:
        stages.release.set()
        other.shutdown()


# -- limits ---------------------------------------------------------------------------------------


def test_a_tenant_at_its_concurrent_jobs_limit_is_refused(coordinator, video_bytes):
    upload(coordinator, "busy", video_bytes)  # runs until the test ends
    manifests_before = sorted(info.key for info in coordinator.store.list("tenants/busy/jobs/"))
    error = refused(lambda: upload(coordinator, "busy", video_bytes, name="second.mp4"))
    assert error.code() == RESOURCE_EXHAUSTED and "max_concurrent_jobs is 1" in error.details(), error.details()
    assert sorted(info.key for info in coordinator.store.list("tenants/busy/jobs/")) == manifests_before
    assert not any(info.key.endswith("second.mp4") for info in coordinator.store.list("tenants/busy/uploads/"))
    busy = next(t for t in _tenants().tenants if t.name == "busy")
    with pytest.raises(QuotaExceeded) as caught:  # the manager's own check, which tells when to retry
        coordinator.manager.check_capacity(busy)
    assert caught.value.subject == "tenant:busy" and caught.value.retry_after_s > 0


def test_a_tenants_upload_limit_stops_the_upload(coordinator, video_bytes):
    assert len(video_bytes) > SMALL_UPLOAD_BYTES
    error = refused(lambda: upload(coordinator, "small", video_bytes))
    assert error.code() == RESOURCE_EXHAUSTED and "max_upload_bytes" in error.details(), error.details()
    assert list(coordinator.store.list("tenants/small/")) == []


def test_a_tenants_output_frames_limit_is_its_admission_limit(coordinator):
    error = refused(lambda: submit_uri(coordinator, "small", "datasets/small/clip.mp4"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and f"limit of {SMALL_OUTPUT_FRAMES}" in error.details(), error.details()
    assert submit_uri(coordinator, "acme", "datasets/acme/clip.mp4").job_id  # the same job, within acme's limits
    assert list(coordinator.store.list("tenants/small/")) == []


# -- logs -----------------------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(f"{self.format(record)} {vars(record)!r}")  # message, traceback and every extra field


def test_no_token_reaches_the_logs(coordinator, video_bytes):
    records, root = Records(), logging.getLogger()
    level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        job = upload(coordinator, "acme", video_bytes, name="logged.mp4")
        stub = coordinator.stub()
        for _, call in job_calls(stub, job.job_id):
            for metadata in (auth("acme"), auth("bravo"), [("authorization", f"Basic {TOKENS['acme']}")],
                             [("authorization", f"Bearer {TOKENS['acme']} and more")]):
                try:
                    call(metadata)
                except grpc.RpcError:
                    pass
        refused(lambda: upload(coordinator, "small", video_bytes))
    finally:
        root.removeHandler(records)
        root.setLevel(level)
    assert any("GetJob" in text and "tenant:acme" in text for text in records.texts)  # the calls were logged, by whom...
    leaked = [text for text in records.texts if any(token in text for token in TOKENS.values())]
    assert leaked == []  # ...without their tokens


# -- stage services -------------------------------------------------------------------------------


class CaptionRecorder(caption_pb2_grpc.CaptionServiceServicer):
    """Answers every call, recording who made it."""

    def __init__(self) -> None:
        self.principals: list[object] = []

    def Caption(self, request, context):
        self.principals.append(current_principal())
        return caption_pb2.CaptionResponse(caption="seen")


def test_a_stage_service_accepts_only_the_coordinators_token(tmp_path, monkeypatch):
    from inspatio_world.rpc.auth import service_verifier_from_env

    service_token = secrets.token_urlsafe(32)
    (tmp_path / "service-token").write_text(service_token + "\n")
    monkeypatch.setenv("INSPATIO_SERVICE_TOKEN_FILE", str(tmp_path / "service-token"))
    recorder = CaptionRecorder()
    server = ServiceServer([(caption_pb2_grpc.add_CaptionServiceServicer_to_server, recorder)], metrics_address=None,
                           verifier=service_verifier_from_env()).start()  # fmt: skip
    server.set_serving()
    channel = grpc.insecure_channel(server.address)
    try:
        stub = caption_pb2_grpc.CaptionServiceStub(channel)
        for metadata in (None, auth("acme"), [("authorization", f"Bearer {token_digest(service_token)}")]):
            error = refused(lambda: stub.Caption(caption_pb2.CaptionRequest(), timeout=TIMEOUT, metadata=metadata))
            assert error.code() == UNAUTHENTICATED
        assert recorder.principals == []  # refused before the servicer
        answer = stub.Caption(caption_pb2.CaptionRequest(), timeout=TIMEOUT,
                              metadata=[("authorization", f"Bearer {service_token}")])  # fmt: skip
        assert answer.caption == "seen" and recorder.principals == [SERVICE_PRINCIPAL]
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        server.stop(grace=0)


def test_a_stage_service_without_a_service_token_file_authenticates_nobody(monkeypatch):
    from inspatio_world.rpc.auth import service_verifier_from_env

    monkeypatch.delenv("INSPATIO_SERVICE_TOKEN_FILE", raising=False)
    assert service_verifier_from_env() is None


# -- start-up -------------------------------------------------------------------------------------


@pytest.mark.parametrize("service, variable, content, named", [
    ("coordinator", "INSPATIO_TENANTS_FILE", json.dumps({"tenants": [{"name": "acme", "token_sha256": ["nope"]}]}),
     "tenants[0].token_sha256[0]"),
    ("caption", "INSPATIO_SERVICE_TOKEN_FILE", "\n", "is empty"),
])  # fmt: skip
def test_a_bad_tenants_or_token_file_stops_the_service_naming_it(tmp_path, service, variable, content, named):
    path = tmp_path / "config"
    path.write_text(content)
    env = {**os.environ, "INSPATIO_GRPC_ADDRESS": f"127.0.0.1:{free_port()}", "INSPATIO_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
           "INSPATIO_STORE": (tmp_path / "store").as_uri(), variable: str(path)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", f"services.{service}.main"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [json.loads(line)["message"] for line in done.stderr.splitlines() if '"ERROR"' in line]
    assert len(errors) == 1 and f"{service}: cannot start" in errors[0] and str(path) in errors[0] and named in errors[0], errors
