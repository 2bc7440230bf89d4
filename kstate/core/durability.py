"""Whether a topic keeps what kstate acknowledges: the checks a node runs on its topic
at start (kstate/node.py logs each finding, /metrics shows them as
``kstate_topic_durability_warnings{reason}``, ``--require-durable`` refuses to start).

kstate acknowledges a write once it is produced with ``acks=all``. That survives the
loss of a broker only if the partition has other replicas (replication factor > 1),
``acks=all`` waits for more than one of them (``min.insync.replicas`` >= 2), and a
replica that missed writes can never become leader (``unclean.leader.election.enable``
false). The checks are pure: they read the replication factor and the topic configs
as the broker described them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

REPLICATION_FACTOR_1 = "replication_factor_1"
MIN_INSYNC_BELOW_2 = "min_insync_replicas_below_2"
UNCLEAN_ELECTION = "unclean_leader_election"
# Every reason, in the order they are reported (the metric shows each, 0 or 1).
REASONS = (REPLICATION_FACTOR_1, MIN_INSYNC_BELOW_2, UNCLEAN_ELECTION)
# The topic configs the checks read (the node describes them at start).
CONFIGS = ("min.insync.replicas", "unclean.leader.election.enable")


@dataclass(frozen=True, slots=True)
class DurabilityWarning:
    """One way the topic can lose an acknowledged write."""
    reason: str  # one of REASONS
    message: str  # one line, for a human


def check(replication: int, configs: Mapping[str, str]) -> list[DurabilityWarning]:
    """What is wrong with a topic of ``replication`` replicas per partition (the
    smallest over its partitions) and these configs; empty when nothing is.

    - replication factor 1: one broker's disk is the only copy;
    - ``min.insync.replicas`` < 2 with replication >= 3: ``acks=all`` may be satisfied
      by the leader alone, whose loss then loses the write (with replication 2 a
      minimum of 2 stops every write while one broker is down, so 1 is the usual
      trade-off there and is not reported);
    - ``unclean.leader.election.enable`` true: a replica that missed writes may
      become leader and truncate them away.

    A config the broker did not describe (or a replication of 0: unknown) is not
    guessed at.
    """
    found: list[DurabilityWarning] = []
    if replication == 1:
        found.append(DurabilityWarning(
            REPLICATION_FACTOR_1,
            f"replication factor {replication}: losing one broker's disk loses "
            "acknowledged writes"))
    min_isr = _int(configs.get("min.insync.replicas"))
    if replication >= 3 and min_isr is not None and min_isr < 2:
        found.append(DurabilityWarning(
            MIN_INSYNC_BELOW_2,
            f"min.insync.replicas={min_isr} with replication factor {replication}: a "
            "write acknowledged by the leader alone is lost with it"))
    if configs.get("unclean.leader.election.enable", "").strip().lower() == "true":
        found.append(DurabilityWarning(
            UNCLEAN_ELECTION,
            "unclean.leader.election.enable=true: an out-of-sync replica may become "
            "leader and drop acknowledged writes"))
    return found


def _int(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    return int(text)
