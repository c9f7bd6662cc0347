"""The local stack's report of a service that died while starting: the message of its last log line."""

from __future__ import annotations

from inspatio_world.stack import _log_message


def test_a_failed_service_start_shows_the_log_lines_message():
    assert _log_message('{"message": "caption: cannot start: /w: weights folder not found", "level": "ERROR"}') == \
        "caption: cannot start: /w: weights folder not found"  # fmt: skip
    assert _log_message("a plain line\n") == "a plain line"
