"""The outcomes the state table keeps for this node's writers (kstate/core/table.py):
what the rule did with each record a kstate node wrote, read by the writer once the
record is applied (actors/writer.py, ``_produce_and_wait``)."""

from __future__ import annotations

import orjson

from actors.replies import ReplyBox
from kstate.core.messages import Assign, Batch, Record
from kstate.core.partition import Outcome
from kstate.core.partitioner import partition_for
from kstate.core.records import EPOCH_HEADER, marker
from kstate.core.table import OUTCOMES_KEPT, StateTable

N = 1  # one partition: every key is in it
EPOCH = 1 << 20


def user(key: bytes) -> bytes:
    return orjson.dumps({"name": "n", "email": key.decode()})


def claimed_table() -> StateTable:
    """A caught-up partition 0 whose epoch is this node's own claim."""
    table = StateTable(N, quiet=True)
    table.assign(Assign(0, frozenset({0}), {0: 0}, ReplyBox(), generation=1))
    key, value, headers = marker(0, EPOCH)
    table.apply(Batch(0, {0: [Record(0, key, value, headers)]}, {0: 1}))
    table.partitions[0].own_epoch = EPOCH
    return table


def test_other_producers_records_with_headers_do_not_evict_a_writes_outcome():
    """A burst of another producer's records that carry headers (an OpenTelemetry
    ``traceparent``), more than OUTCOMES_KEPT of them, fetched with this node's write:
    the write's outcome is still there for its writer (else the client gets 503
    write_unconfirmed for a write that was applied)."""
    table = claimed_table()
    own = Record(1, b"mine@x.io", user(b"mine@x.io"), ((EPOCH_HEADER, str(EPOCH).encode()),))
    foreign = []
    for i in range(OUTCOMES_KEPT + 10):
        key = f"u{i}@x.io".encode()
        assert partition_for(key, N) == 0
        foreign.append(Record(2 + i, key, user(key), (("traceparent", b"00-abc-def-01"),)))
    table.apply(Batch(0, {0: [own, *foreign]}, {0: 2 + len(foreign)}))
    part = table.partitions[0]
    assert part.data.keys() >= {b"mine@x.io", b"u0@x.io"}  # all of them applied
    assert part.outcomes.get(1) == Outcome(True, None, True, 1)
    assert all(r.offset not in part.outcomes for r in foreign)


def test_a_kstate_records_outcome_is_kept_whatever_it_became():
    """Records with an owner epoch keep their outcome: applied, or fenced (a write of
    an older epoch, e.g. this node's own write that landed after a newer marker)."""
    table = claimed_table()
    stale = Record(1, b"a@x.io", user(b"a@x.io"), ((EPOCH_HEADER, str(EPOCH - 1).encode()),))
    fresh = Record(2, b"b@x.io", user(b"b@x.io"), ((EPOCH_HEADER, str(EPOCH).encode()),))
    table.apply(Batch(0, {0: [stale, fresh]}, {0: 3}))
    outcomes = table.partitions[0].outcomes
    assert outcomes.get(1) == Outcome(False, "fenced", False, -1)
    assert outcomes.get(2) == Outcome(True, None, True, 2)
