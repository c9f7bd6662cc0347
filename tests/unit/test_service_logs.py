"""Service logs: one JSON object per line on stderr, and no secret in them."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from inspatio_world.rpc.logs import REDACTED, JsonFormatter
from inspatio_world.stack import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "some-secret-value"


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    for entry in entries:
        assert isinstance(entry.get("message"), str) and entry.get("level"), entry
    return entries


def test_a_service_logs_json_lines_without_secrets(tmp_path):
    """A real service process (as the local stack starts it) whose weights folder is missing: it
    logs its start, the cause of its failure and its stop, each as one JSON line, and never the S3
    secret it has in its environment."""
    missing = tmp_path / "no-weights"
    env = {**os.environ, "INSPATIO_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
           "INSPATIO_METRICS_ADDRESS": f"127.0.0.1:{free_port()}", "INSPATIO_WEIGHTS": str(missing),
           "INSPATIO_STORE": (tmp_path / "store").as_uri(), "INSPATIO_DRAIN_SECONDS": "0",
           "INSPATIO_S3_ACCESS_KEY": "some-access-key", "INSPATIO_S3_SECRET_KEY": SECRET,
           "AWS_SECRET_ACCESS_KEY": SECRET}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "services.caption.main"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert SECRET not in done.stdout + done.stderr
    entries = _json_lines(done.stderr)
    failure = [e for e in entries if e["level"] == "ERROR"]
    assert len(failure) == 1 and "caption: cannot start" in failure[0]["message"], entries
    assert str(missing) in failure[0]["message"]
    started = [e for e in entries if e["message"].startswith("serving")]
    assert started and started[0]["address"] == env["INSPATIO_GRPC_ADDRESS"]  # structured fields stay top-level keys


def _format(message: str, fields: dict | None = None) -> dict:
    record = logging.LogRecord("inspatio_world.test", logging.INFO, __file__, 1, message, (), None)
    if fields is not None:
        record.fields = fields
    return json.loads(JsonFormatter().format(record))


def test_secret_looking_fields_are_redacted_and_object_keys_kept():
    entry = _format("hello", {"secret_key": SECRET, "token": SECRET, "db_password": SECRET, "access_key": SECRET,
                              "api_key": SECRET, "key": "cache/depth/abc/depth.npz", "seconds": 0.5,
                              "token_count": 3, "secret": ""})  # fmt: skip
    assert SECRET not in json.dumps(entry)
    assert entry["secret_key"] == entry["token"] == entry["db_password"] == entry["access_key"] == REDACTED
    assert entry["api_key"] == REDACTED
    assert entry["key"] == "cache/depth/abc/depth.npz" and entry["seconds"] == 0.5  # an object key is no secret
    assert entry["token_count"] == 3 and entry["secret"] == ""  # numbers and empty values say nothing


def test_credentials_in_a_url_are_redacted():
    """Store URLs never hold credentials by design, but one pasted with them must not reach the log."""
    entry = _format(f"store URL 's3://AKIAEXAMPLE:{SECRET}/x@bucket?endpoint=h:9000': credentials go in the environment")
    assert SECRET not in json.dumps(entry) and "AKIAEXAMPLE" not in entry["message"]
    assert entry["message"].startswith(f"store URL 's3://{REDACTED}@bucket?endpoint=h:9000'")


def test_uncaught_errors_and_warnings_are_json_lines():
    script = ("import warnings; from inspatio_world.rpc.logs import configure_json_logging\n"
              "configure_json_logging()\nwarnings.warn('careful')\nraise RuntimeError('boom')\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    entries = _json_lines(done.stderr)
    assert [e["level"] for e in entries] == ["WARNING", "CRITICAL"], entries
    assert "careful" in entries[0]["message"]
    assert "RuntimeError: boom" in entries[1]["message"] and "Traceback" in entries[1]["exception"]
