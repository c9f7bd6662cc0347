"""A tenant's limit on open live sessions, at the real coordinator (jobs/session_quota.py), over the
real stack on 127.0.0.1 (tests/support/session_stack.py: tiny weights, CPU, two tenants with tokens).

bravo's tenants-file entry sets max_concurrent_sessions 1; acme sets none and gets the deployment's
INSPATIO_TENANT_MAX_SESSIONS (2 here). The generator holds 4 sessions, so every refusal here is the
tenant's. One more session than the limit is refused before its upload with RESOURCE_EXHAUSTED, a
QuotaFailure naming the tenant and a RetryInfo; the place is free again after each way a session
ends: close, max_blocks, an error (a bad command), the client leaving (cancel), idle, and the
generator draining (SIGTERM: "shutting_down").
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from inspatio_world.client import Client, error_details
from inspatio_world.jobs.session_quota import RETRY_AFTER_S

from tests.support.session_stack import BUCKET, session_stack

TIMEOUT = 120
IDLE_SECONDS = 5
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_weights):
    with session_stack(tmp_path_factory.mktemp("stack"), tiny_weights.root, tenant_limits={"bravo": {"max_concurrent_sessions": 1}},
                       coordinator_env={"INSPATIO_TENANT_MAX_SESSIONS": "2"}, INSPATIO_MAX_SESSIONS="4",
                       INSPATIO_SESSION_MAX_BLOCKS="2", INSPATIO_SESSION_IDLE_SECONDS=str(IDLE_SECONDS)) as running:  # fmt: skip
        yield running


def client(stack, tenant: str) -> Client:
    return Client(stack.address, timeout=TIMEOUT, token=stack.tokens[tenant])


def uploads(stack, tenant: str) -> int:
    return len(list((stack.store.root / BUCKET / "tenants" / tenant / "uploads").rglob("*.mp4")))


def refused_by_tenant(stack, sdk: Client, tenant: str) -> grpc.RpcError:
    before = uploads(stack, tenant)
    with pytest.raises(grpc.RpcError) as caught:
        sdk.session(stack.video).open()
    error = caught.value
    assert error.code() == EXHAUSTED, error.details()
    details = error_details(error)
    assert [v.subject for v in details.quota_violations] == [f"tenant:{tenant}"]
    assert details.retry_delay_s == RETRY_AFTER_S
    assert uploads(stack, tenant) == before  # refused before the upload: nothing stored
    return error


def opens_again(stack, sdk: Client, within: float = 30.0):
    """A new session opens once the last one's place is free (the coordinator frees it as the call
    ends, a moment after the client saw the end); the tenant's refusal meanwhile, never another error."""
    deadline = time.monotonic() + within
    while True:
        session = sdk.session(stack.video)
        try:
            return session.open()
        except grpc.RpcError as error:
            assert error.code() == EXHAUSTED and "tenant" in error.details(), error.details()
            assert time.monotonic() < deadline, f"the tenant's place was not freed within {within} s"
            time.sleep(0.2)


def test_one_more_than_the_tenants_own_limit_is_refused_and_other_tenants_are_not(stack):
    with client(stack, "bravo") as bravo, client(stack, "acme") as acme:
        with bravo.session(stack.video) as held:
            held.pause()  # held open: block 0 never starts
            error = refused_by_tenant(stack, bravo, "bravo")
            assert "1 live session(s) open and may hold 1" in error.details()
            assert "max_concurrent_sessions" in error.details()
            with acme.session(stack.video) as other:  # another tenant's sessions are counted apart
                assert other.ready is not None
        # left by cancelling: the place frees when the coordinator sees the call end
        opens_again(stack, bravo).cancel()


def test_the_default_limit_applies_to_a_tenant_that_sets_none(stack):
    with client(stack, "acme") as acme:
        with acme.session(stack.video) as first, acme.session(stack.video) as second:
            first.pause()
            second.pause()
            error = refused_by_tenant(stack, acme, "acme")
            assert "INSPATIO_TENANT_MAX_SESSIONS" in error.details() and "may hold 2" in error.details()
    with client(stack, "acme") as acme:
        opens_again(stack, acme).cancel()


def test_the_place_is_free_again_after_close_max_blocks_and_an_error(stack):
    with client(stack, "bravo") as bravo:
        session = opens_again(stack, bravo)
        session.close()  # the first command: block 0 never starts
        assert list(session) == [] and session.ended.reason == "closed"

        session = opens_again(stack, bravo)
        session.move(forward=0.1)
        assert len(list(session)) == 2 and session.ended.reason == "max_blocks"

        session = opens_again(stack, bravo)
        session.cameras([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])  # singular: INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as caught:
            list(session)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        opens_again(stack, bravo).cancel()


def test_the_place_is_free_again_after_an_idle_end(stack):
    with client(stack, "bravo") as bravo:
        session = opens_again(stack, bravo)
        session.pause()  # no block, no command: the generator ends it after INSPATIO_SESSION_IDLE_SECONDS
        assert list(session) == [] and session.ended.reason == "idle"
        opens_again(stack, bravo).cancel()


def test_the_place_is_free_again_after_the_generator_drains(stack):
    with client(stack, "bravo") as bravo:
        session = opens_again(stack, bravo)
        session.pause()
        stopping = threading.Thread(target=stack.stack.stop_service, args=("generator",))
        stopping.start()  # SIGTERM: the replica ends its sessions with "shutting_down", then exits
        try:
            assert list(session) == [] and session.ended.reason == "shutting_down"
        finally:
            stopping.join()
            stack.stack.restart_service("generator")
        opens_again(stack, bravo, within=60).cancel()
