"""Fixtures for integration tests: one real SeaweedFS S3 server and one live-session stack for the whole session."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.seaweedfs import SeaweedFS
from tests.support.session_stack import SHARED_GENERATOR_ENV, SessionStack, session_stack


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    with SeaweedFS() as server:
        yield server


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory, tiny_weights) -> Iterator[SessionStack]:
    """The live-session stack of test_session_coordinator and test_session_stack (SHARED_GENERATOR_ENV)."""
    with session_stack(tmp_path_factory.mktemp("live-stack"), tiny_weights.root, **SHARED_GENERATOR_ENV) as running:
        yield running
