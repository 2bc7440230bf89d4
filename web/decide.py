"""The one read decision and the one write decision, for every HTTP path.

Both servers (web/user_request.py, for the lean front and the quart routes) call
:func:`read_user` and :func:`write_user`; forwarding a request to its owner happens
here too. A read is answered locally (behind the catch-up gate, or fenced while its
partition moves), forwarded to its owner, or — when neither can answer — from the
standby copy (fenced), else refused. Every answer is a domain outcome or the owner's
own answer; web/render.py turns it into HTTP. Counts go to the router's counters:
each request counts once, whichever path it took.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.router import Local, Nowhere, Remote, RouterHandle
from kstate.core.outcomes import Conflict, Found, Missing, TooLarge, Unavailable, Written
from web.proxy import Incoming, PeerResponse, Proxy

ReadAnswer = Found | Missing | Unavailable | PeerResponse
WriteAnswer = Written | Conflict | TooLarge | Unavailable | PeerResponse


@dataclass(frozen=True, slots=True)
class Decider:
    """The decision's collaborators: the router (locality, local reads, writes) and
    the proxy (forwarding)."""

    router: RouterHandle
    proxy: Proxy

    async def read_user(self, key: bytes, req: Incoming, peer_generation: int | None
                        ) -> tuple[ReadAnswer, bool]:
        """Answer a read of ``key``; also whether the answer came through the proxy
        (the latency kind "proxied")."""
        router = self.router
        route = router.settle_nowait(key, req.hops, read=True, peer_generation=peer_generation)
        if route is None:
            route = await router.settle(key, req.hops, read=True,
                                        peer_generation=peer_generation)
        if isinstance(route, Local):
            # a caught-up partition answers at once; else the read waits or is fenced
            got = router.read_nowait(route.partition, key)
            if got is None:
                got = await router.read(route.partition, key)
            return self._counted(got), False
        if isinstance(route, Remote):
            router.counters.forwards += 1
            answer = await self.proxy.exchange(req, route.url, route.generation)
            if not isinstance(answer, Unavailable):
                return answer, True
            # The owner did not answer (died, or unreachable): the standby copy may.
            # The proxy counted the failure.
            got = await router.standby_read(route.partition, key)
            return (answer, True) if got is None else (got, False)
        # no owner, moving, too many hops: the standby copy may answer
        got = await router.standby_read(route.partition, key)
        return self._counted(got or route.refusal), False

    async def write_user(self, key: bytes, value: bytes | None, if_match: str | None,
                         req: Incoming, peer_generation: int | None
                         ) -> tuple[WriteAnswer, bool]:
        """Answer a write of ``key`` (``value`` None: delete); also whether forwarded."""
        router = self.router
        route = router.settle_nowait(key, req.hops, peer_generation=peer_generation)
        if route is None:
            route = await router.settle(key, req.hops, peer_generation=peer_generation)
        if isinstance(route, Remote):
            router.counters.forwards += 1
            return await self.proxy.exchange(req, route.url, route.generation), True
        if isinstance(route, Nowhere):
            router.counters.unavailable += 1
            return route.refusal, False
        req.progress.writing = True  # from here the record may be produced
        return await router.write(route.partition, key, value, if_match), False

    def _counted(self, answer: Found | Missing | Unavailable) -> Found | Missing | Unavailable:
        if isinstance(answer, Unavailable):
            self.router.counters.unavailable += 1
        return answer
