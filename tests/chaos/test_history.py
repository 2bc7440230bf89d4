"""The run's history as tools/linearizability reads it: lines written by History for
made-up answers, checked by the Go checker the harness builds (.cache/bin)."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tools.chaos import linearizability
from tools.chaos.history import History

K = "k1@chaos.test"


def history(path: Path) -> History:
    return History(path, 100.0, {"topic": "t"})


def put(h: History, client: int, seq: int, call: float, ret: float, status: int | None,
        version: str | None = None, code: str | None = None, if_match: str | None = None
        ) -> str:
    hid = h.call(client=client, node="n", key=K, op="put", if_match=if_match,
                 value=f"{K}#{seq}", call=call)
    if status is None:
        h.no_answer(hid, ret=ret, error="ReadTimeout")
        return "unknown"
    return h.answer(hid, ret=ret, status=status, code=code,
                    etag=None if version is None else f'"{version}"')


def get(h: History, client: int, call: float, ret: float, seq: int | None,
        version: str | None = None) -> str:
    hid = h.call(client=client, node="n", key=K, op="get", if_match=None, value=None,
                 call=call)
    if seq is None:
        return h.answer(hid, ret=ret, status=404, code="not_found")
    return h.answer(hid, ret=ret, status=200, code=None, value=f"{K}#{seq}",
                    etag=f'"{version}"')


def delete(h: History, client: int, call: float, ret: float, status: int,
           version: str | None = None, code: str | None = None) -> str:
    hid = h.call(client=client, node="n", key=K, op="delete", if_match=None, value=None,
                 call=call)
    return h.answer(hid, ret=ret, status=status, code=code,
                    etag=None if version is None else f'"{version}"')


def test_lines_and_outcomes(tmp_path: Path) -> None:
    h = history(tmp_path / "h.jsonl")
    assert put(h, 1, 0, 100.0, 100.5, 201, "3-10") == "ok"
    assert put(h, 1, 1, 101.0, 106.0, 503, code="write_timeout") == "unknown"
    assert put(h, 1, 2, 107.0, 107.1, 503, code="not_owner") == "fail"
    assert put(h, 1, 3, 108.0, 108.1, 200) == "unknown"  # an ack without a version
    assert delete(h, 2, 109.0, 109.1, 204) == "ok"
    hid = h.call(client=3, node="n", key=K, op="get", if_match=None, value=None, call=110.0)
    h.close()  # never answered: written as unknown
    lines = [json.loads(x) for x in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert lines[0] == {"type": "meta", "topic": "t"}
    ops = lines[1:]
    assert [o["outcome"] for o in ops] == ["ok", "unknown", "fail", "unknown", "ok", "unknown"]
    assert ops[0]["call"] == 0.0
    assert ops[0]["return"] == 0.5
    assert ops[0]["result"] == {"value": None, "version": "3-10"}
    assert ops[1]["code"] == "write_timeout"
    assert ops[3]["code"] == "no_etag"
    assert ops[4]["result"] == {"value": None, "version": None}
    assert ops[5]["id"] == hid
    assert ops[5]["return"] is None
    assert h.statistics()["ops"] == 6


async def check(path: Path, out: Path) -> dict:
    return await linearizability.check(path, out, 30.0)


async def test_porcupine_accepts_a_right_history(tmp_path: Path) -> None:
    h = history(tmp_path / "ok.jsonl")
    put(h, 1, 0, 100.0, 100.5, 201, "3-10")
    put(h, 1, 1, 101.0, 106.0, 503, code="write_timeout")  # may land later
    get(h, 2, 106.5, 106.6, 0, "3-10")
    get(h, 2, 107.0, 107.1, 1, "3-11")  # it did
    delete(h, 1, 108.0, 108.2, 204, "3-12")
    get(h, 2, 108.5, 108.6, None)
    delete(h, 1, 109.0, 109.1, 204)  # nothing left to delete
    h.close()
    report = await check(tmp_path / "ok.jsonl", tmp_path / "ok")
    assert report["verdict"] == "linearizable", report
    assert report["ops"] == 7
    assert await trio.to_thread.run_sync(linearizability.ensure_built) == linearizability.BIN


async def test_porcupine_finds_a_stale_read_and_draws_it(tmp_path: Path) -> None:
    h = history(tmp_path / "bad.jsonl")
    put(h, 1, 0, 100.0, 100.5, 201, "3-10")
    put(h, 1, 1, 101.0, 101.5, 200, "3-11")
    get(h, 2, 102.0, 102.1, 0, "3-10")  # an isolated node answering from memory
    delete(h, 1, 103.0, 103.1, 204, "3-12")
    get(h, 2, 104.0, 104.1, 1, "3-11")  # the deleted value, after the delete
    h.close()
    report = await check(tmp_path / "bad.jsonl", tmp_path / "bad")
    assert report["verdict"] == "violation", report
    assert report["violating_keys"] == [K]
    assert [Path(p).name for p in report["picture_paths"]] == [f"violation-{K}.html"]
    assert await trio.Path(report["picture_paths"][0]).is_file()
