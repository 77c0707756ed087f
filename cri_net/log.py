"""Structured logging: `key=value` text or one JSON object per line.

Every record carries its context as keyword fields (`pod=`, `network=`, `plugin=`...), passed
with `extra={"fields": {...}}` or through `kv(logger, level, msg, **fields)`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from .libcni.logfields import kv  # one convention for the library and the rest

TYPE_CHECKING = False  # `typing` costs a short-lived CLI ~4 ms
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KeyValueFormatter", "JSONFormatter", "setup", "kv"]


def _quote(value: Any) -> str:
    """The value as one token: quoted (JSON escapes) when it is empty, holds a space, = or ",
    or anything unprintable: a pod name is the pod author's, and a CR, an ESC sequence or a
    bidi override in it must not rewrite or hide the line on an operator's terminal."""
    text = str(value)
    if text == "" or not text.isprintable() or any(c in text for c in ' ="'):
        return json.dumps(text)
    return text


def iso_time(record: logging.LogRecord) -> str:
    """ISO-8601 UTC with milliseconds: one time format for text and JSON logs, so they sort and join."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"time={iso_time(record)}", f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={_quote(record.getMessage())}"]
        for key, value in getattr(record, "fields", {}).items():
            parts.append(f"{key}={_quote(value)}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": iso_time(record), "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(), **getattr(record, "fields", {}),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger once for a command-line entry point (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


