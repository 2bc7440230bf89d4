"""Logging: one line per event, key=value (default) or JSON."""

from __future__ import annotations

import logging
import sys
import time

import orjson


class _KV(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"ts={ts}.{int(record.msecs):03d}Z level={record.levelname} " \
               f"logger={record.name} {record.getMessage()}"
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {"ts": record.created, "level": record.levelname,
                                  "logger": record.name}
        msg = record.getMessage()
        fields: dict[str, str] = {}
        for part in msg.split(" "):
            k, eq, v = part.partition("=")
            if eq and k.isidentifier():
                fields[k] = v
        doc.update(fields or {"message": msg})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json() if fmt == "json" else _KV())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about every (re)join; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("hypercorn.error").setLevel(max(logging.WARNING, root.level))
