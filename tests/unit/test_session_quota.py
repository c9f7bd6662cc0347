"""Each tenant's open live sessions at the coordinator (jobs/session_quota.py): its own limit or the
deployment's default, per tenant, refused with a retry delay, and a release that counts once. The
coordinator's use of it (every way a session ends) is tests/integration/test_session_tenant_limit.py."""

from __future__ import annotations

import pytest

from inspatio_world.jobs.session_quota import RETRY_AFTER_S, TenantSessions
from inspatio_world.jobs.tenants import ANONYMOUS, Tenant
from inspatio_world.refusals import QuotaExceeded

ACME, BRAVO = Tenant("acme", max_concurrent_sessions=1), Tenant("bravo")


def test_a_tenants_own_limit_else_the_default_per_tenant():
    quota = TenantSessions(default_limit=2)
    held = [quota.acquire(ACME), quota.acquire(BRAVO), quota.acquire(BRAVO), quota.acquire(ANONYMOUS)]
    with pytest.raises(QuotaExceeded) as acme:
        quota.acquire(ACME)
    assert acme.value.subject == "tenant:acme" and acme.value.retry_after_s == RETRY_AFTER_S
    assert "1 live session(s) open and may hold 1" in str(acme.value) and "max_concurrent_sessions" in str(acme.value)
    with pytest.raises(QuotaExceeded, match="INSPATIO_TENANT_MAX_SESSIONS") as bravo:
        quota.acquire(BRAVO)
    assert bravo.value.subject == "tenant:bravo"
    assert (quota.open(ACME), quota.open(BRAVO), quota.open(ANONYMOUS)) == (1, 2, 1)
    assert len(held) == 4


def test_a_release_counts_once():
    quota = TenantSessions(default_limit=1)
    release = quota.acquire(BRAVO)
    release()
    release()  # the call's end callback and the handler's own `finally` both release
    assert quota.open(BRAVO) == 0
    quota.acquire(BRAVO)
    with pytest.raises(QuotaExceeded):
        quota.acquire(BRAVO)


def test_the_default_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("INSPATIO_TENANT_MAX_SESSIONS", "7")
    assert TenantSessions().limit(BRAVO) == 7 and TenantSessions().limit(ACME) == 1
    monkeypatch.setenv("INSPATIO_TENANT_MAX_SESSIONS", "0")
    with pytest.raises(ValueError, match="INSPATIO_TENANT_MAX_SESSIONS"):
        TenantSessions()
