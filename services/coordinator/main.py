"""`python -m services.coordinator.main`: jobs in, progress out; calls the stage services over gRPC.
Also serves SessionService (live sessions, relayed to a generator replica: session_servicer.py).

On start it resumes every unfinished job whose coordinator is gone (expired lease), and keeps
checking for such jobs, so jobs survive coordinator restarts.

With INSPATIO_TENANTS_FILE every application RPC needs a tenant's bearer token; without it, open mode.
"""

from __future__ import annotations

import functools
import threading

from inspatio_world import envvars
from inspatio_world.jobs.manager import JobManager
from inspatio_world.jobs.remote_stages import RemoteStages
from inspatio_world.jobs.tenants import Tenants
from inspatio_world.rpc.auth import TokenVerifier
from inspatio_world.rpc.bootstrap import ServiceSettings, run_service
from inspatio_world.rpc.channels import ClientTLS
from inspatio_world.rpc.generated import coordinator_pb2_grpc, session_pb2_grpc
from inspatio_world.rpc.tokens import service_token

from .servicer import CoordinatorServicer
from .session_servicer import SessionServicer


@functools.cache  # read once: the verifier and the servicer see the same tenants
def _tenants() -> Tenants:
    return Tenants.from_env()


def _verifier() -> TokenVerifier | None:
    tenants = _tenants()
    return None if tenants.open else TokenVerifier(tenants.token_digests())


def stage_client(store) -> RemoteStages:
    """The stages' addresses, TLS settings (INSPATIO_TLS_CA, _CLIENT_CERT/_KEY, _SERVER_NAME), the
    service token (INSPATIO_SERVICE_TOKEN_FILE) and whether the generator renders (INSPATIO_STREAM_RENDER),
    from the environment."""
    return RemoteStages(store, envvars.get(envvars.CAPTION_ADDRESS), envvars.get(envvars.DEPTHRENDER_ADDRESS),
                        envvars.get(envvars.GENERATOR_ADDRESS), ready_wait_s=float(envvars.get(envvars.STAGE_WAIT_SECONDS)),
                        tls=ClientTLS.from_env(), token=service_token(),
                        stream_render=envvars.get_flag(envvars.STREAM_RENDER),
                        generator_v1_5_address=envvars.get(envvars.GENERATOR_V1_5_ADDRESS))  # fmt: skip


def load(settings, store, server):
    tenants = _tenants()
    tenants.check_bucket(store.bucket)
    stages = stage_client(store)
    lease = float(envvars.get(envvars.JOB_LEASE_SECONDS))
    manager = JobManager(store, stages, int(envvars.get(envvars.MAX_PARALLEL_JOBS)), lease_seconds=lease)
    manager.resume_unfinished()
    threading.Thread(target=_keep_resuming, args=(manager, lease), name="resume", daemon=True).start()
    return [CoordinatorServicer(manager, tenants), SessionServicer(manager, tenants, server.metrics)]


def _keep_resuming(manager: JobManager, lease: float) -> None:
    while True:
        threading.Event().wait(lease)
        try:
            manager.resume_unfinished()
        except Exception:  # the store may be briefly unreachable; try again next round
            pass


def main() -> None:
    settings = ServiceSettings.from_env("coordinator")
    run_service(settings, [coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server,
                           session_pb2_grpc.add_SessionServiceServicer_to_server], load, limited=False,
                verifier=_verifier)


if __name__ == "__main__":
    main()
