"""kstate/core/durability.py: the ways a topic can lose acknowledged writes, from the
replication factor and the configs a broker describes."""

from __future__ import annotations

import pytest

from kstate.core.durability import (
    COMPACTION_LAG_BELOW_1H,
    FINITE_RETENTION,
    MIN_INSYNC_BELOW_2,
    REASONS,
    REPLICATION_FACTOR_1,
    UNCLEAN_ELECTION,
    check,
)

SAFE = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
# A topic as kstate creates it, described by a broker (retention.* are its defaults).
AS_CREATED = {**SAFE, "cleanup.policy": "compact", "retention.ms": "604800000",
              "retention.bytes": "-1", "min.compaction.lag.ms": "3600000"}
WEEK = "604800000"


@pytest.mark.parametrize(("replication", "configs", "reasons"), [
    (3, SAFE, []),
    (5, {**SAFE, "min.insync.replicas": "3"}, []),
    (1, SAFE, [REPLICATION_FACTOR_1]),
    (1, {"min.insync.replicas": "1"}, [REPLICATION_FACTOR_1]),  # RF 1: ISR 1 is implied
    (3, {**SAFE, "min.insync.replicas": "1"}, [MIN_INSYNC_BELOW_2]),
    (4, {**SAFE, "min.insync.replicas": "0"}, [MIN_INSYNC_BELOW_2]),
    (2, {**SAFE, "min.insync.replicas": "1"}, []),  # the usual RF 2 trade-off
    (3, {**SAFE, "unclean.leader.election.enable": "true"}, [UNCLEAN_ELECTION]),
    (3, {**SAFE, "unclean.leader.election.enable": " TRUE "}, [UNCLEAN_ELECTION]),
    (1, {"min.insync.replicas": "1", "unclean.leader.election.enable": "true"},
     [REPLICATION_FACTOR_1, UNCLEAN_ELECTION]),
    (3, {"min.insync.replicas": "1", "unclean.leader.election.enable": "true"},
     [MIN_INSYNC_BELOW_2, UNCLEAN_ELECTION]),
    (3, {}, []),  # nothing described: nothing guessed
    (3, {"min.insync.replicas": "two", "unclean.leader.election.enable": "yes?"}, []),
    (0, {}, []),  # replication unknown
    (3, AS_CREATED, []),  # compact only: Kafka deletes nothing by retention
    # retention deletes a key's latest record too
    (3, {**AS_CREATED, "cleanup.policy": "compact,delete"}, [FINITE_RETENTION]),
    (3, {**AS_CREATED, "cleanup.policy": " Delete , COMPACT "}, [FINITE_RETENTION]),
    (3, {**AS_CREATED, "cleanup.policy": "delete"}, [FINITE_RETENTION]),
    (3, {**AS_CREATED, "cleanup.policy": "compact,delete", "retention.ms": "0"},
     [FINITE_RETENTION]),
    (3, {**AS_CREATED, "cleanup.policy": "compact,delete", "retention.ms": "-1",
         "retention.bytes": "1073741824"}, [FINITE_RETENTION]),
    (3, {**AS_CREATED, "cleanup.policy": "compact,delete", "retention.ms": "-1"}, []),
    (3, {**AS_CREATED, "cleanup.policy": "compact,delete", "retention.ms": "7d",
         "retention.bytes": "lots"}, []),  # not numbers: not guessed
    # compaction before an owner can restate a key shadowed by a fenced record
    (3, {**AS_CREATED, "min.compaction.lag.ms": "0"}, [COMPACTION_LAG_BELOW_1H]),
    (3, {**AS_CREATED, "min.compaction.lag.ms": "3599999"}, [COMPACTION_LAG_BELOW_1H]),
    (3, {**AS_CREATED, "min.compaction.lag.ms": "86400000"}, []),
    (3, {**AS_CREATED, "cleanup.policy": "delete", "retention.ms": "-1",
         "min.compaction.lag.ms": "0"}, []),  # never compacted: no lag to respect
    (1, {**AS_CREATED, "cleanup.policy": "compact,delete", "min.compaction.lag.ms": "0",
         "unclean.leader.election.enable": "true"},
     [REPLICATION_FACTOR_1, UNCLEAN_ELECTION, FINITE_RETENTION, COMPACTION_LAG_BELOW_1H]),
])
def test_durability_reasons(replication, configs, reasons):
    found = check(replication, configs)
    assert [w.reason for w in found] == reasons
    assert all(w.reason in REASONS for w in found)
    for w in found:
        assert w.message
        assert "\n" not in w.message


def test_the_retention_finding_names_the_limit_and_what_is_lost():
    [w] = check(3, {**AS_CREATED, "cleanup.policy": "compact,delete"})
    assert f"retention.ms={WEEK}" in w.message
    assert "retention.bytes" not in w.message  # -1: no limit
    assert "not written again" in w.message
