"""kstate/core/durability.py: the ways a topic can lose acknowledged writes, from the
replication factor and the configs a broker describes."""

from __future__ import annotations

import pytest

from kstate.core.durability import (
    MIN_INSYNC_BELOW_2,
    REASONS,
    REPLICATION_FACTOR_1,
    UNCLEAN_ELECTION,
    check,
)

SAFE = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}


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
])
def test_durability_reasons(replication, configs, reasons):
    found = check(replication, configs)
    assert [w.reason for w in found] == reasons
    assert all(w.reason in REASONS for w in found)
    for w in found:
        assert w.message
        assert "\n" not in w.message
