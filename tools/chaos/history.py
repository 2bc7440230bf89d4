"""The run's history: every client operation (seeding, workload, probes, sweeps, bursts,
cut traffic, final reads), one JSON line each, in the format tools/linearizability reads
(its README.md): ``id, client, node, key, op, if_match, value, call, return, status,
code, result {value, version}, outcome``, plus ``source`` and the own checker's
``verdict`` (ignored by Porcupine; they tie a line to the report).

An operation is written when its answer arrives; one still open when the history is
closed (the run was cut short) is written with ``return: null`` and outcome
``unknown``, so Porcupine never misses a write that may have happened. Times are
seconds since the run's start, on the checker's clock.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import IO, Any

import orjson

from tools.chaos.outcomes import Op, Outcome, classify


class History:
    """Owns the history file: opened by the constructor, closed by :meth:`close`."""

    def __init__(self, path: Path, t0: float, meta: dict[str, Any]) -> None:
        self.path = path
        self.t0 = t0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = open(path, "wb")  # closed by close()
        self._open: dict[int, dict[str, Any]] = {}
        self._next = 0
        self.outcomes: Counter[str] = Counter()
        self.ops = 0
        self._write({"type": "meta", **meta})

    def call(self, *, client: int, node: str, key: str, op: Op, if_match: str | None,
             value: str | None, call: float) -> int:
        """An operation sent at ``call`` (monotonic); returns its id."""
        self._next += 1
        self._open[self._next] = {
            "id": self._next, "client": client, "node": node, "key": key, "op": op,
            "if_match": if_match, "value": value, "call": self._t(call), "return": None,
            "status": None, "code": None, "result": None, "outcome": "unknown"}
        return self._next

    def answer(self, op_id: int, *, ret: float, status: int, code: str | None,
               value: str | None = None, etag: str | None = None, source: str = "",
               verdict: str = "") -> Outcome:
        """The answer of ``op_id``: ``value`` a get 200 returned, ``etag`` as answered."""
        rec = self._open.pop(op_id)
        outcome = classify(rec["op"], status, code)
        version = _version(etag)
        if outcome == "ok":
            if rec["op"] == "get" and status == 200:
                if version is None or value is None:
                    outcome, code = "unknown", code or "no_etag"  # nothing to check it by
                else:
                    rec["result"] = {"value": value, "version": version}
            elif rec["op"] == "put":
                if version is None:
                    outcome, code = "unknown", code or "no_etag"
                else:
                    rec["result"] = {"value": None, "version": version}
            elif rec["op"] == "delete":
                rec["result"] = {"value": None, "version": version}
        rec.update({"return": self._t(ret), "status": status, "code": code,
                    "outcome": outcome, "source": source, "verdict": verdict})
        self._done(rec)
        return outcome

    def no_answer(self, op_id: int, *, ret: float, error: str, source: str = "",
                  verdict: str = "") -> None:
        """``op_id`` got no answer (timeout, connection error): outcome unknown."""
        rec = self._open.pop(op_id)
        rec.update({"code": error, "source": source, "verdict": verdict})
        self._done(rec)

    def close(self) -> None:
        """Write the operations still open (outcome unknown, no return) and close."""
        for rec in list(self._open.values()):
            rec.update({"code": "no_answer_recorded", "source": "unfinished"})
            self._done(rec)
        self._open.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    def statistics(self) -> dict[str, Any]:
        return {"file": str(self.path), "ops": self.ops, "outcomes": dict(self.outcomes)}

    def _done(self, rec: dict[str, Any]) -> None:
        self.ops += 1
        self.outcomes[f"{rec['op']}/{rec['outcome']}"] += 1
        self._write(rec)

    def _write(self, rec: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(orjson.dumps(rec) + b"\n")

    def _t(self, t: float) -> float:
        return round(t - self.t0, 6)


def _version(etag: str | None) -> str | None:
    """``3-1042`` from ``"3-1042"``; None when there is no well-formed ETag."""
    if etag is None:
        return None
    text = etag.strip()
    if len(text) < 5 or text[0] != '"' or text[-1] != '"':
        return None
    p, sep, o = text[1:-1].partition("-")
    return text[1:-1] if sep and p.isdigit() and o.isdigit() else None
