"""Structured logs: one JSON object per line, ready for a log collector, built on stdlib logging.

Code logs as usual; structured fields travel in `extra={"fields": {...}}` and become top-level keys,
e.g. the server's one line per RPC:
{"time": "...", "level": "INFO", "logger": "inspatio_world.rpc", "message": "/pkg.Svc/M OK 0.012s",
 "method": "/pkg.Svc/M", "status": "OK", "seconds": 0.012, "peer": "ipv4:10.0.0.7:51234"}
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_json_logging(level: int | str = logging.INFO) -> None:
    """Send every log record of the process to stderr as JSON lines (call once, in a service's main)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
