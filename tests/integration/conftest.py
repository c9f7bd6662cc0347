"""Fixtures for integration tests: one real SeaweedFS S3 server for the whole session."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.support.seaweedfs import SeaweedFS


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    with SeaweedFS() as server:
        yield server
