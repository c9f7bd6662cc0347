"""Shared test fixtures: where the golden parity pack lives; a per-user cache folder of the tests' own;
tiny weights written once per run."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from inspatio_world import envvars

REPO = Path(__file__).resolve().parents[1]


def find_parity_pack() -> Path | None:
    configured = envvars.get(envvars.PARITY_PACK)
    candidates = [Path(configured)] if configured else [REPO.parent / "shared" / "parity", Path("/work/shared/parity")]
    return next((p for p in candidates if (p / "README.md").is_file()), None)


@pytest.fixture(scope="session")
def parity_pack() -> Path:
    pack = find_parity_pack()
    if pack is None:
        pytest.fail(f"parity pack not found: set {envvars.PARITY_PACK.name} to the shared/parity folder")
    return pack


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """One tiny weight folder for the whole run, read-only for its users (a test that changes its
    weights writes or copies its own): each write builds every tiny model again."""
    from inspatio_world.pipeline.tiny_weights import write_tiny_weights  # torch: only for tests that need it

    return write_tiny_weights(tmp_path_factory.mktemp("tiny-weights"))


def pytest_configure(config) -> None:
    """Tests (and the services and commands they start) never write into the real ~/.cache/inspatio."""
    config._inspatio_cache = tempfile.mkdtemp(prefix="inspatio-test-cache-")
    os.environ[envvars.CACHE_DIR.name] = config._inspatio_cache


def pytest_unconfigure(config) -> None:
    shutil.rmtree(getattr(config, "_inspatio_cache", ""), ignore_errors=True)
