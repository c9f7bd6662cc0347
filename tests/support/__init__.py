"""Helpers shared by test suites (real servers started for tests)."""
