"""What an answer says about whether a request took effect: ``ok``, ``fail`` or
``unknown``. One table, used by the checker (a failed write must never become visible)
and by the history Porcupine reads (tools/linearizability/README.md), so the two
checkers judge the same outcomes.

- ``ok``: completed (get 200/404, put 200/201, delete 204).
- ``fail``: definitely not applied: any 4xx (412 included) and a 503 whose code promises
  that nothing was written (:data:`CODES_503`).
- ``unknown``: may take effect at any later time, or never: no answer (timeout,
  connection error), a 503 whose code promises nothing, any code not in the table
  (never ``fail``: an unknown code promises nothing), any other 5xx, and an answer that
  is not what a completed operation of its kind looks like.
"""

from __future__ import annotations

from typing import Literal

import orjson

Outcome = Literal["ok", "fail", "unknown"]
Op = Literal["get", "put", "delete"]

# The 503 codes kstate answers to a read or a write (an `Unavailable("code", ...)`, or a
# 503 made directly: render.error, the front's error_bytes; tests/chaos/test_outcomes.py
# finds them all), and whether the request can still have been applied. A code not here
# is "unknown". The /changes handshake's refusals (feed_*) answer no read or write.
CODES_503: dict[str, Outcome] = {
    # refused before anything was produced
    "not_owner": "fail",  # the writer's partition is moving (writer.not_serving)
    "key_busy": "fail",  # an earlier write of the key held the lock past write_timeout
    "no_owner": "fail",  # the router knows no owner for the partition
    "rebalancing": "fail",  # the router's partition is moving to a new owner
    "too_many_hops": "fail",  # forwarded MAX_HOPS times, not sent on
    "catching_up": "fail",  # the owner has not replayed the partition yet
    "owner_isolated": "fail",  # past the read lease: a read or write refused, undecided
    "superseded": "fail",  # a write fenced because a newer owner took over
    "owner_not_reached": "fail",  # forwarding: never sent to the owner
    "claiming": "fail",  # the owner's claim marker is not written yet: nothing produced
    "partition_undecodable": "fail",  # the partition stopped at a batch it cannot read
    "cluster_auth_busy": "fail",  # the owner's replay cache is full: refused unread
    "write_refused": "fail",  # Kafka refused the whole batch as too large: not appended
    "too_many_connections": "fail",  # the front's, at accept: no request was read
    # may have been produced, or may still be
    "write_timeout": "unknown",  # not confirmed in time; the record may still land
    "broker_unavailable": "unknown",  # the produce failed; Kafka may have appended it
    "owner_no_answer": "unknown",  # forwarded, no answer: the owner may have written it
    "write_unconfirmed": "unknown",  # the partition moved before the write was applied
    "shutting_down": "unknown",  # cut off by the node's shutdown, how far it got not known
}

OK_STATUS: dict[Op, frozenset[int]] = {
    "get": frozenset({200, 404}),
    "put": frozenset({200, 201}),
    "delete": frozenset({204}),
}


def classify(op: Op, status: int | None, code: str | None) -> Outcome:
    """The outcome of ``op`` answered ``status`` (None: no answer) with error ``code``."""
    if status is None:
        return "unknown"
    if status in OK_STATUS[op]:
        return "ok"
    if 400 <= status < 500:
        return "fail"
    if status == 503 and code is not None:
        return CODES_503.get(code, "unknown")
    return "unknown"


def error_code(body: bytes) -> str | None:
    """The ``error`` field of a JSON error body, if there is one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    code = doc.get("error") if isinstance(doc, dict) else None
    return code if isinstance(code, str) else None
