"""The environment-variable registry: flags refuse typos, and the README documents every variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspatio_world import envvars

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("1", True), (" 1 ", True)])
def test_flags_read_0_and_1(monkeypatch, value, expected):
    monkeypatch.setenv(envvars.FP8.name, value)
    assert envvars.get_flag(envvars.FP8) is expected


@pytest.mark.parametrize("value", ["yes", "true", "", "2"])
def test_flags_refuse_anything_else_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(envvars.FP8.name, value)
    with pytest.raises(ValueError, match="INSPATIO_FP8"):
        envvars.get_flag(envvars.FP8)


def test_flags_default_off(monkeypatch):
    monkeypatch.delenv(envvars.FP8.name, raising=False)
    assert envvars.get_flag(envvars.FP8) is False


def test_readme_documents_every_variable():
    text = README.read_text()
    missing = [var.name for var in envvars.ALL if f"`{var.name}`" not in text]
    assert missing == []


def test_every_declared_variable_is_in_the_registry():
    """ALL is what the README test and the chart test read: a variable left out of it escapes both."""
    declared = {value.name for value in vars(envvars).values() if isinstance(value, envvars.EnvVar)}
    assert declared - {var.name for var in envvars.ALL} == set()
