"""The log formats: one line per event; JSON lines are objects with the message's
key=value pairs as fields, exceptions included."""

from __future__ import annotations

import ast
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from kstate import logs


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """logs.setup's handler, writing into a buffer; the root logger restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    buffer = io.StringIO()
    try:
        yield buffer, logging.getLogger("kstate.test")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _setup(fmt: str, buffer: io.StringIO) -> None:
    logs.setup("INFO", fmt)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)


def _lines(buffer: io.StringIO) -> list[str]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return text[:-1].split("\n")


def test_json_one_object_per_line_with_typed_fields(capture):
    buffer, log = capture
    _setup("json", buffer)
    log.info("event=invalid_record partition=%d offset=%d reason=%r seconds=%.3f",
             3, 10, "value is not JSON", 1.25)
    log.info("event=assign members=%d plan=%s", 2, {"127.0.0.1:1": [0, 1], "b": [2]})
    log.warning("Running on http://127.0.0.1:1 (CTRL + C to quit)")
    log.info("event=line\nbreak level=FAKE")
    lines = _lines(buffer)
    assert len(lines) == 4
    docs = [orjson.loads(line) for line in lines]
    first = docs[0]
    assert first["event"] == "invalid_record"
    assert first["partition"] == 3
    assert first["offset"] == 10
    assert first["reason"] == "value is not JSON"
    assert first["seconds"] == 1.25
    assert first["level"] == "INFO"
    assert first["logger"] == "kstate.test"
    assert first["ts"].endswith("Z")
    # A bracketed value with spaces stays one field.
    assert docs[1]["plan"] == "{'127.0.0.1:1': [0, 1], 'b': [2]}"
    assert docs[1]["members"] == 2
    # Free text is kept whole as the message.
    assert docs[2]["message"] == "Running on http://127.0.0.1:1 (CTRL + C to quit)"
    assert docs[2]["level"] == "WARNING"
    # A field never overrides the record's own level.
    assert docs[3]["level"] == "INFO"


def test_json_exception_is_a_field_of_the_same_line(capture):
    buffer, log = capture
    _setup("json", buffer)
    try:
        raise ValueError("boom\nwith a second line")
    except ValueError:
        log.exception("event=node_crashed")
    lines = _lines(buffer)
    assert len(lines) == 1
    doc = orjson.loads(lines[0])
    assert doc["event"] == "node_crashed"
    assert doc["level"] == "ERROR"
    assert "Traceback" in doc["exc"]
    assert "ValueError: boom\nwith a second line" in doc["exc"]


def test_kv_is_one_line_even_with_newlines_and_exceptions(capture):
    buffer, log = capture
    _setup("kv", buffer)
    log.info("event=a text=%s", "x\ny")
    try:
        raise RuntimeError("bad\nthing")
    except RuntimeError:
        log.exception("event=b")
    lines = _lines(buffer)
    assert len(lines) == 2
    assert lines[0].startswith("ts=")
    assert " level=INFO logger=kstate.test event=a " in lines[0]
    assert lines[0].endswith("text=x\\ny")
    assert "event=b exc='Traceback" in lines[1]
    assert "RuntimeError: bad\\nthing" in lines[1]


@pytest.mark.parametrize(("msg", "expected"), [
    ("event=x a=1 b=-2 c=0.5 d=007", {"event": "x", "a": 1, "b": -2, "c": 0.5, "d": "007"}),
    ("event=x r='it is' q=\"two words\"", {"event": "x", "r": "it is", "q": "two words"}),
    ("event=x e=Err('a b (c)') f=[1, [2, 3]]",
     {"event": "x", "e": "Err('a b (c)')", "f": "[1, [2, 3]]"}),
    ("no fields here", None),
    ("event=x then free text", None),
    ("", None),
])
def test_parse_fields(msg, expected):
    assert logs.parse_fields(msg) == expected


_REPO = Path(__file__).resolve().parents[2]
_LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
_FREE_TEXT = {"error", "why", "detail"}  # values with spaces: always %r (one quoted field)


def _event_formats() -> list[tuple[str, str]]:
    """Every ``log.<level>("event=...", ...)`` format string of the product's code."""
    found = []
    for package in ("kstate", "actors", "web"):
        for path in sorted((_REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr in _LEVELS and node.args \
                        and isinstance(node.args[0], ast.Constant) \
                        and isinstance(node.args[0].value, str) \
                        and node.args[0].value.startswith("event="):
                    found.append((f"{path.relative_to(_REPO)}:{node.lineno}",
                                  node.args[0].value))
    return found


def test_every_event_line_is_key_value_so_json_logs_keep_its_fields():
    # A line that is not key=value all through becomes one JSON "message": its event
    # and fields are lost to whoever filters on them (regression: free text after a
    # colon, and exception texts with spaces, hid e.g. kafka_stop_failed that way).
    formats = _event_formats()
    assert len(formats) > 40  # the scan finds the code's log calls
    for where, fmt in formats:
        for key in _FREE_TEXT:
            assert f"{key}=%s" not in fmt, f"{where}: {key}= takes free text: use %r"
        sample = re.sub(r"%[-0-9.]*[dfi]", "1", fmt.replace("%r", "'free text: a, b'"))
        fields = logs.parse_fields(sample.replace("%s", "token"))
        assert fields is not None, f"{where}: {fmt!r}"
        assert "event" in fields, f"{where}: {fmt!r}"


def _user(i: int) -> tuple[bytes, bytes]:
    key = f"u{i}@example.com".encode()
    return key, b'{"name":"N","email":"' + key + b'"}'


@pytest.mark.parametrize(("every", "lines"), [(0.0, 3), (3600.0, 0)])
def test_catch_up_progress_is_logged_rate_limited(caplog, monkeypatch, every, lines):
    from actors.replies import ReplyBox
    from kstate.core import table as table_mod
    from kstate.core.messages import Assign, Batch, Record

    monkeypatch.setattr(table_mod, "PROGRESS_EVERY", every)
    table = table_mod.StateTable(1)
    table.assign(Assign(1, frozenset({0}), {0: 100}, ReplyBox()))
    caplog.set_level(logging.INFO, logger="kstate.core.table")
    for start in (0, 25, 50):  # three batches of 25 records, the last one catches up
        recs = [Record(o, *_user(o)) for o in range(start, start + 25)]
        table.apply(Batch(1, {0: recs}, {0: start + 25 if start < 50 else 100}))
    progress = [r.getMessage() for r in caplog.records if "event=catching_up" in r.getMessage()]
    assert len(progress) == lines, progress
    if lines:
        fields = logs.parse_fields(progress[1])
        assert fields is not None
        assert fields["position"] == 50
        assert fields["target"] == 100
        assert fields["percent"] == 50.0
        assert isinstance(fields["records_per_s"], int)
    assert any("event=caught_up partition=0 position=100" in r.getMessage()
               for r in caplog.records)
