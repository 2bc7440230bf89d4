"""Log lines, one per event: key=value (``kv``) or JSON. Pure formatting, shared by the
node's logging (kstate/logs.py) and its producer process, which writes its last lines
itself once the node is gone (kstate/bridge/producer_process.py).

Messages are written as ``event=name key=value ...`` (values with spaces are quoted or
bracketed, as ``%r`` of a str, list or dict gives them). The kv format prints them as
they are, on one line (newlines escaped). The JSON format prints one object per line:
``ts``, ``level``, ``logger``, every key=value of the message as a field (integers and
decimals as numbers), or ``message`` for text that is not key=value, and ``exc`` with
the traceback when there is one.
"""

from __future__ import annotations

import logging
import re
import time

import orjson

FORMATS = ("kv", "json")


_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]+)?")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_CLOSE = {"[": "]", "{": "}", "(": ")"}


def _value_end(msg: str, i: int) -> int:
    """Index just past the value starting at ``msg[i]``: a quoted string, a bracketed
    group (quotes and nesting respected) or a run of non-spaces."""
    stack: list[str] = []
    quote = ""
    n = len(msg)
    while i < n:
        c = msg[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
                if not stack:
                    return i + 1
        elif c in "'\"":
            quote = c
        elif c in _CLOSE:
            stack.append(_CLOSE[c])
        elif stack and c == stack[-1]:
            stack.pop()
        elif not stack and c.isspace():
            return i
        i += 1
    return n


def parse_fields(msg: str) -> dict[str, object] | None:
    """The key=value pairs of a message, or None if any part of it is not one."""
    fields: dict[str, object] = {}
    i, n = 0, len(msg)
    while i < n:
        if msg[i].isspace():
            i += 1
            continue
        key = _KEY.match(msg, i)
        if key is None or key.end() >= n or msg[key.end()] != "=":
            return None
        start = key.end() + 1
        end = _value_end(msg, start)
        raw = msg[start:end]
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
            fields[key.group()] = raw[1:-1]
        elif _NUMBER.fullmatch(raw):
            fields[key.group()] = float(raw) if "." in raw else int(raw)
        else:
            fields[key.group()] = raw
        i = end
    return fields or None


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… <message>`` on one line (newlines escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace("\n", "\\n").replace("\r", "\\r")
        line = f"ts={ts}.{int(record.msecs):03d}Z level={record.levelname} " \
               f"logger={record.name} {msg}"
        if record.exc_info:
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage()
        fields = parse_fields(msg) or {"message": msg}
        doc: dict[str, object] = {"ts": f"{ts}.{int(record.msecs):03d}Z",
                                  "level": record.levelname, "logger": record.name}
        for key, value in fields.items():
            doc.setdefault(key, value)  # a field never hides ts, level or logger
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``fmt`` (one of FORMATS)."""
    return JsonFormatter() if fmt == "json" else KeyValueFormatter()
