"""What a kstate answer means to the client: its errors, and which refusals leave a
write's outcome unknown."""

from __future__ import annotations

import math

import orjson

from kstate.client._http import Answer

# 503 codes after which a write may still have been applied: the owner's
# (actors/writer.py: not confirmed in time, Kafka's error, or the partition moved before
# the record was applied here), the forwarding node's when the owner took the request
# and gave no answer (web/proxy.py; its "owner_not_reached" is certain: safe to retry),
# and the front's when a node's shutdown cut a request off and the node's own answer to
# it failed (web/http1/wire.py, cut_off_response: it cannot tell how far it got).
AMBIGUOUS_WRITE_CODES = frozenset({"write_timeout", "broker_unavailable", "write_unconfirmed",
                                   "owner_no_answer", "shutting_down"})
# 503 codes after which a write was certainly not applied (refused before anything was
# produced, or Kafka refused the batch whole). Only these let a conditional write be
# retried: a code not in this set (one a newer node sends, a front proxy's 503 without
# kstate's JSON body) says nothing, so it leaves the outcome unknown.
NOT_APPLIED_CODES = frozenset({"not_owner", "key_busy", "no_owner", "rebalancing",
                               "too_many_hops", "catching_up", "owner_isolated", "superseded",
                               "owner_not_reached", "claiming", "partition_undecodable",
                               "cluster_auth_busy", "write_refused", "too_many_connections"})


class KstateError(Exception):
    """An answer kstate gave (or could not give): ``status`` (0 = no HTTP answer),
    ``code`` and ``message`` from the JSON error body ``{"error", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class PreconditionFailed(KstateError):
    """412: ``If-Match`` did not name the key's current version."""


class Unavailable(KstateError):
    """No usable answer within the retries: 503 (``retry_after`` seconds suggested) or
    no connection (status 0)."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(status, code, message)
        self.retry_after = retry_after


def error_of(r: Answer) -> KstateError:
    try:
        doc = orjson.loads(r.content)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        code, message = doc["error"], str(doc.get("message", ""))
    else:
        code, message = f"http_{r.status}", r.text[:200]
    if r.status == 412:
        return PreconditionFailed(412, code, message)
    if r.status == 503:
        return Unavailable(503, code, message, retry_after_of(r))
    return KstateError(r.status, code, message)


def retry_after_of(r: Answer) -> float | None:
    raw = r.headers.get("retry-after")
    try:
        secs = float(raw) if raw is not None else None
    except ValueError:
        return None  # an HTTP-date: kstate never sends one
    return secs if secs is not None and math.isfinite(secs) and secs >= 0 else None
