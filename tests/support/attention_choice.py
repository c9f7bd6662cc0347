"""A fresh attention-kernel choice around a test (models/attention.py resolves it once per process)."""

from __future__ import annotations

import pytest

from inspatio_world.models import attention


@pytest.fixture
def fresh_attention_choice():
    attention.resolve_backend.cache_clear()
    attention._selected.clear()
    yield
    attention.resolve_backend.cache_clear()
    attention._selected.clear()
