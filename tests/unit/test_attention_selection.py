"""Attention kernel choice: validated names, SDPA where no flash kernel runs, cross-attention apart."""

from __future__ import annotations

import pytest
import torch

from inspatio_world.models import attention
from tests.support.attention_choice import fresh_attention_choice  # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures("fresh_attention_choice")


def test_auto_is_sdpa_without_a_flash_kernel_for_this_machine(monkeypatch):
    monkeypatch.setattr(attention, "_runs_here", lambda backend: False)
    monkeypatch.setenv("INSPATIO_ATTENTION", "auto")
    assert attention.selected_backends() == {"self": "sdpa", "cross": "sdpa"}


def test_auto_prefers_flash4_then_flash3_then_flash2(monkeypatch):
    monkeypatch.setenv("INSPATIO_ATTENTION", "auto")
    for available, expected in ((("flash4", "flash3"), "flash4"), (("flash3", "flash2"), "flash3"), (("flash2",), "flash2")):
        attention.resolve_backend.cache_clear()
        monkeypatch.setattr(attention, "_runs_here", lambda backend, available=available: backend in available)
        assert attention.resolve_backend() == expected


def test_cross_attention_auto_stays_on_sdpa(monkeypatch):
    monkeypatch.setattr(attention, "_runs_here", lambda backend: backend == "flash4")
    monkeypatch.setenv("INSPATIO_ATTENTION", "auto")
    monkeypatch.delenv("INSPATIO_CROSS_ATTENTION", raising=False)
    assert attention.selected_backends() == {"self": "flash4", "cross": "sdpa"}


def test_unknown_or_missing_kernels_are_clear_errors(monkeypatch):
    monkeypatch.setenv("INSPATIO_ATTENTION", "flash9")
    with pytest.raises(ValueError, match="INSPATIO_ATTENTION='flash9'"):
        attention.resolve_backend()
    monkeypatch.setenv("INSPATIO_CROSS_ATTENTION", "flash9")
    with pytest.raises(ValueError, match="INSPATIO_CROSS_ATTENTION='flash9'"):
        attention.resolve_cross_backend()
    monkeypatch.setattr(attention, "_flash_function", lambda backend: None)
    monkeypatch.setenv("INSPATIO_ATTENTION", "flash4")
    with pytest.raises(RuntimeError, match="'flash4' requested but its package is not importable"):
        attention.resolve_backend()


def test_cpu_tensors_use_sdpa_whatever_the_choice():
    attention._selected.update(self="flash4", cross="flash4")
    q, k, v = torch.randn(1, 5, 2, 8), torch.randn(1, 7, 2, 8), torch.randn(1, 7, 2, 8)
    expected = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / 8**0.5, -1)
    out = attention.attention(q, k, v, kind="cross")
    assert torch.allclose(out, torch.einsum("bhqk,bkhd->bqhd", expected, v), atol=1e-6)


def test_override_restores_the_process_choice():
    attention._selected.update(self="flash4", cross="sdpa")
    with attention.backends_overridden(self="sdpa"):
        assert attention.selected_backends() == {"self": "sdpa", "cross": "sdpa"}
    assert attention.selected_backends() == {"self": "flash4", "cross": "sdpa"}

