"""The routing-aware client (kstate/client) once closed stays closed: a request after
``aclose()`` is refused rather than opening connections nothing would close."""

from __future__ import annotations

import pytest

from kstate.client import KstateClient


async def test_a_closed_client_refuses_requests():
    kc = KstateClient(["127.0.0.1:1"])  # nothing listens there
    await kc.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await kc.get("a@b.c")
    await kc.aclose()  # twice is fine
