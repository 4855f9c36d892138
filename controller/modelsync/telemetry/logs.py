"""Log lines about objects: which object and which revision, as fields of their own
in JSON logs (`--log-format json`) so a log collector can filter on them."""

from __future__ import annotations

import datetime
import json
import logging


def about(kind: str, namespace: str, name: str, revision: str | None = None) -> dict[str, str]:
    """`extra=` for a log call about one object (and the revision it is at)."""
    fields = {"object": f"{kind} {namespace}/{name}"}
    if revision:
        fields["revision"] = revision
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message, the object and
    revision the line is about (when it is), and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("object", "revision"):
            if hasattr(record, field):
                entry[field] = str(getattr(record, field))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)
