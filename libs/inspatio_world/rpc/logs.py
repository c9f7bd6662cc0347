"""Structured logs: one JSON object per line, ready for a log collector, built on stdlib logging.

Code logs as usual; structured fields travel in `extra={"fields": {...}}` and become top-level keys,
e.g. the server's one line per RPC:
{"time": "...", "level": "INFO", "logger": "inspatio_world.rpc", "message": "/pkg.Svc/M OK 0.012s",
 "method": "/pkg.Svc/M", "status": "OK", "seconds": 0.012, "peer": "ipv4:10.0.0.7:51234"}

No secret reaches a line: nothing logs the environment (where the S3 credentials are), store URLs
hold no credentials by design, and as a safety net the formatter replaces the value of any field
whose name says secret (token, secret, password, credential, api/access/private key; a bare `key`
is an object key and stays) and the user:password part of any URL with "[redacted]".
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import datetime, timezone

REDACTED = "[redacted]"
SECRET_FIELD = re.compile(r"token|secret|passw(or)?d|credential|authorization|(api|access|private)_?key", re.IGNORECASE)
URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^\s'\"@]+@", re.IGNORECASE)  # scheme://user:pass@


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({name: _redacted(name, value) for name, value in getattr(record, "fields", {}).items()})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return URL_CREDENTIALS.sub(rf"\1{REDACTED}@", json.dumps(entry, default=str))


def _redacted(name: str, value: object) -> object:
    secret = isinstance(value, (str, bytes)) and value and SECRET_FIELD.search(str(name))
    return REDACTED if secret else value


def configure_json_logging(level: int | str = logging.INFO) -> None:
    """Send every log record of the process to stderr as JSON lines (call once, in a service's main),
    and with them Python warnings and uncaught exceptions, which would otherwise print plain text."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(exc_type, exc, tb, where: str = "") -> None:
    logging.getLogger("inspatio_world").critical("uncaught %s%s: %s", exc_type.__name__, where, exc,
                                                 exc_info=(exc_type, exc, tb))  # fmt: skip


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if not issubclass(args.exc_type, SystemExit):  # a thread's SystemExit ends it quietly, as by default
        where = f" in thread {args.thread.name}" if args.thread is not None else ""
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback, where)
