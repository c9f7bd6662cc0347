"""Each tenant's live sessions open at one coordinator, and its limit on them.

A tenant holds at most `max_concurrent_sessions` (its tenants-file entry) sessions open at once, else
the deployment's default (INSPATIO_TENANT_MAX_SESSIONS, 4), the open mode's anonymous tenant included.
One more is refused at once (QuotaExceeded: RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo, as a
full generator replica refuses). A place is taken when a session's start is accepted and given back
when the session ends, whichever way (`acquire` returns the release, safe to call more than once).

The count lives in the coordinator's memory: sessions are streams through one coordinator replica,
so with several replicas each one applies the limit to the sessions it relays.
"""

from __future__ import annotations

import threading
from typing import Callable

from .. import envvars
from ..refusals import QuotaExceeded
from .tenants import Tenant

RETRY_AFTER_S = 5.0  # as a full generator replica's: sessions last minutes, a place frees up with time


class TenantSessions:
    """Open sessions per tenant (by name; None is the anonymous tenant)."""

    def __init__(self, default_limit: int | None = None) -> None:
        """`default_limit`: for tenants that set none (None: INSPATIO_TENANT_MAX_SESSIONS)."""
        self.default_limit = envvars.get_positive_int(envvars.TENANT_MAX_SESSIONS) if default_limit is None else default_limit
        self._open: dict[str | None, int] = {}
        self._lock = threading.Lock()

    def limit(self, tenant: Tenant) -> int:
        return tenant.max_concurrent_sessions or self.default_limit

    def open(self, tenant: Tenant) -> int:
        with self._lock:
            return self._open.get(tenant.name, 0)

    def acquire(self, tenant: Tenant) -> Callable[[], None]:
        """Take one of the tenant's places (QuotaExceeded when it has none left); returns its release."""
        limit = self.limit(tenant)
        with self._lock:
            held = self._open.get(tenant.name, 0)
            if held >= limit:
                where = "its max_concurrent_sessions" if tenant.max_concurrent_sessions else envvars.TENANT_MAX_SESSIONS.name
                raise QuotaExceeded(tenant.subject, f"this tenant has {held} live session(s) open and may hold {limit} "
                                                    f"at once ({where}): retry when one has ended", RETRY_AFTER_S)  # fmt: skip
            self._open[tenant.name] = held + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                self._open[tenant.name] -= 1

        return release
