"""The read lease (kstate/bridge/lease.py): renewed by answered heartbeats, it ends a
margin before the session timeout counted from the heartbeat's send time."""

from __future__ import annotations

import time

from kstate.bridge.lease import DRIFT, SCHEDULING, Lease


def test_lease_ends_before_the_coordinator_could_expire_the_member():
    lease = Lease(6000)
    assert not lease.valid()  # no heartbeat answered yet: nothing to prove
    sent = time.monotonic() - 1.0
    lease.renew(sent)
    assert lease.valid()
    assert lease.until == sent + 6.0 * (1 - DRIFT) - SCHEDULING
    assert lease.until < sent + 6.0  # strictly inside the session
    # a late answer to an older heartbeat never shortens it
    lease.renew(sent - 3.0)
    assert lease.until == sent + 6.0 * (1 - DRIFT) - SCHEDULING
    assert lease.renewals == 2


def test_lease_expires():
    lease = Lease(1000)
    lease.renew(time.monotonic() - 1.0)  # sent a session ago
    assert not lease.valid()
    assert lease.remaining() < 0
