"""A saved history judged again (tools/chaos/rejudge.py): the replay gives every answer
the verdict the run gave it, and shows where the checker judges differently now."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tools.chaos.checker import Checker, value_for
from tools.chaos.history import History
from tools.chaos.rejudge import main, rejudge

pytestmark = pytest.mark.fast  # pure logic, no broker

K = "u0001-t@chaos.test"
T0 = 100.0


class Run:
    """Answers judged by a checker and recorded in a history, as traffic.py does."""

    def __init__(self, path: Path) -> None:
        self.c = Checker([K])
        self.h = History(path, T0, {"topic": "t"})

    def write(self, t0: float, t1: float, status: int | None, offset: int | None = None,
              delete: bool = False, code: str | None = None, if_match: int | None = None,
              client: int = 0) -> None:
        seq, _ = self.c.begin_write(K, t0, if_match, delete=delete)
        hid = self.h.call(client=client, node="n1", key=K, op="delete" if delete else "put",
                          if_match=None if if_match is None else f'"3-{if_match}"',
                          value=None if delete else f"{K}#{seq}", call=T0 + t0)
        etag = None if offset is None else f'"3-{offset}"'
        if status is None:
            self.c.end_write(K, seq, t1, None, None, False)
            self.h.no_answer(hid, ret=T0 + t1, error="ReadTimeout", verdict="timeout")
            return
        v = self.c.end_write(K, seq, t1, status, etag, True, code=code)
        self.h.answer(hid, ret=T0 + t1, status=status, code=code, etag=etag, verdict=v.kind,
                      source="workload")

    def read(self, t0: float, t1: float, seq: int | None, offset: int = 0,
             source: str = "workload") -> None:
        hid = self.h.call(client=9, node="n2", key=K, op="get", if_match=None, value=None,
                          call=T0 + t0)
        final = source in ("verify", "final")
        if seq is None:
            v = self.c.judge_read(K, t0, t1, 404, b"{}", None, False, final=final)
            self.h.answer(hid, ret=T0 + t1, status=404, code="not_found", verdict=v.kind,
                          source=source)
            return
        etag = f'"3-{offset}"'
        v = self.c.judge_read(K, t0, t1, 200, value_for(K, seq), etag, False, final=final)
        self.h.answer(hid, ret=T0 + t1, status=200, code=None, value=f"{K}#{seq}", etag=etag,
                      verdict=v.kind, source=source)


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines()]


def test_the_replay_gives_every_answer_its_verdict(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    r = Run(path)
    r.write(1.0, 1.1, 201, 10)
    r.write(2.0, 9.0, 503, code="write_timeout")  # concurrent with what follows
    r.read(2.5, 2.6, 0, 10)
    r.write(3.0, 3.2, 412, if_match=5)  # right: 10 replaced 5
    r.write(4.0, 4.1, 200, 12)
    r.read(4.05, 4.3, 1, 11)  # the ambiguous one, seen before 12 was acked
    r.read(4.5, 4.6, 0, 10)  # stale
    r.write(5.0, 5.1, None)  # no answer
    r.write(6.0, 6.1, 204, 13, delete=True)
    r.read(7.0, 7.1, None, source="final")
    r.h.close()
    got = rejudge(lines(path))
    assert got["differ"] == []
    assert got["seq_mismatches"] == 0
    assert [v["kind"] for v in got["violations"]] == ["stale"]
    assert got["verdicts"] == {"acked": 3, "ok": 2, "stale": 1, "unavailable": 1,
                               "precondition_failed": 1, "ok_404": 1}
    assert main([str(path)]) == 1  # a violation


def test_the_replay_shows_what_the_checker_judges_differently(tmp_path: Path) -> None:
    # A delete answered 503 before an acked put began; then a 404: the run recorded it
    # as ok_404 (the checker before the answer-time rule held for deletes).
    path = tmp_path / "h.jsonl"
    r = Run(path)
    r.write(1.0, 1.1, 201, 10)
    r.write(2.0, 2.5, 503, delete=True, code="write_timeout")
    r.write(3.0, 3.1, 200, 20)
    r.read(4.0, 4.1, None)
    r.h.close()
    ops = lines(path)
    assert ops[-1]["verdict"] == "late_ambiguous"
    ops[-1]["verdict"] = "ok_404"
    path.write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in ops))
    got = rejudge(lines(path))
    assert [(d["recorded"], d["now"]) for d in got["differ"]] == [("ok_404", "late_ambiguous")]
    assert main([str(path)]) == 1
    clean = tmp_path / "clean.jsonl"
    r = Run(clean)
    r.write(1.0, 1.1, 201, 10)
    r.read(2.0, 2.1, 0, 10)
    r.h.close()
    assert main([str(clean)]) == 0
