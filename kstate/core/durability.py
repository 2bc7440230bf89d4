"""Whether a topic keeps what kstate acknowledges: the checks a node runs on its topic
at start (kstate/node.py logs each finding, /metrics shows them as
``kstate_topic_durability_warnings{reason}``, ``--require-durable`` refuses to start).

kstate acknowledges a write once it is produced with ``acks=all``. That survives the
loss of a broker only if the partition has other replicas (replication factor > 1),
``acks=all`` waits for more than one of them (``min.insync.replicas`` >= 2), and a
replica that missed writes can never become leader (``unclean.leader.election.enable``
false). It survives the next replay (a restart, a rebalance) only if Kafka keeps each
key's latest record: no deletion by retention (``cleanup.policy`` without ``delete``,
or unlimited ``retention.ms`` and ``retention.bytes``), and no compaction before an
owner can restate a key whose latest record is a fenced or refused write
(``min.compaction.lag.ms`` of at least the hour kstate creates its topic with:
docs/design.md, "Owner epochs"). The checks are pure: they read the replication factor
and the topic configs as the broker described them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

REPLICATION_FACTOR_1 = "replication_factor_1"
MIN_INSYNC_BELOW_2 = "min_insync_replicas_below_2"
UNCLEAN_ELECTION = "unclean_leader_election"
FINITE_RETENTION = "finite_retention"
COMPACTION_LAG_BELOW_1H = "min_compaction_lag_below_1h"
# Every reason, in the order they are reported (the metric shows each, 0 or 1).
REASONS = (REPLICATION_FACTOR_1, MIN_INSYNC_BELOW_2, UNCLEAN_ELECTION, FINITE_RETENTION,
           COMPACTION_LAG_BELOW_1H)
# The topic configs the checks read (the node describes them at start).
CONFIGS = ("min.insync.replicas", "unclean.leader.election.enable", "cleanup.policy",
           "retention.ms", "retention.bytes", "min.compaction.lag.ms")
# A record stays out of compaction this long: time for an owner to repair a key whose
# latest record was fenced, before the cleaner could drop the key's real state
# (docs/design.md, "Owner epochs"). kstate creates its topic with it.
MIN_COMPACTION_LAG_MS = 3_600_000


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
      become leader and truncate them away;
    - ``cleanup.policy`` with ``delete`` and a finite ``retention.ms`` or
      ``retention.bytes``: Kafka deletes old records, a key's latest one too, so a
      user not written again within the retention is gone after the next replay (and
      so are the owner epochs' markers) while its owner still serves it;
    - ``cleanup.policy`` with ``compact`` and ``min.compaction.lag.ms`` below
      MIN_COMPACTION_LAG_MS: the cleaner may keep only a fenced or refused record of
      a key before its owner restates the key's acknowledged state.

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
    raw_policy = configs.get("cleanup.policy")
    policy = cleanup_policies(configs)
    if "delete" in policy:
        limits = [f"{name}={n}" for name in ("retention.ms", "retention.bytes")
                  if (n := _signed(configs.get(name))) is not None and n >= 0]
        if limits:  # -1: no limit
            found.append(DurabilityWarning(
                FINITE_RETENTION,
                f"cleanup.policy={raw_policy} with {' and '.join(limits)}: Kafka deletes "
                "records past it, so a user not written again within it is lost at the "
                "next replay (a restart or a rebalance) while its owner still serves it"))
    lag = _signed(configs.get("min.compaction.lag.ms"))
    if "compact" in policy and lag is not None and lag < MIN_COMPACTION_LAG_MS:
        found.append(DurabilityWarning(
            COMPACTION_LAG_BELOW_1H,
            f"min.compaction.lag.ms={lag} (below {MIN_COMPACTION_LAG_MS}): compaction may "
            "keep only a fenced or refused record of a key before its owner restates the "
            "key's acknowledged state"))
    return found


def cleanup_policies(configs: Mapping[str, str]) -> set[str]:
    """The topic's ``cleanup.policy`` as a set: ``compact``, ``delete`` or both (empty:
    not described)."""
    return {p.strip().lower() for p in configs.get("cleanup.policy", "").split(",")} - {""}


def _int(raw: str | None) -> int | None:
    if raw is None:
        return None
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        return None
    return int(text)


def _signed(raw: str | None) -> int | None:
    """A long config as Kafka describes it (``-1``: no limit)."""
    if raw is None:
        return None
    text = raw.strip()
    digits = text.removeprefix("-")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 19:
        return None
    return int(text)
