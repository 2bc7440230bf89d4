"""Everything the HTTP layer may use, built once by the composition root
(kstate/node.py) and never changed after: the node's HTTP settings, the actors'
handles, the forwarding proxy, the read/write decision, the metrics and (with an API
token) the replay cache of node signatures."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from actors.feed import FeedHandle
from actors.router import RouterHandle
from actors.state import StateHandle
from actors.writer import WriterHandle
from web.auth import AuthConfig
from web.decide import Decider
from web.loop_lag import LoopLag
from web.metrics import Metrics
from web.nonces import NonceCache
from web.proxy import Proxy


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The HTTP layer's settings (from kstate/settings.py)."""

    url: str  # this node's advertised host:port (the bound port when listening on 0)
    topic: str
    group: str
    max_body: int = 65_536
    api_token: str = field(default="", repr=False)
    started_at: float = 0.0  # time.monotonic() when the node started
    bound_at: float = 0.0  # time.time() when the node bound its socket (web/auth.py)
    cluster_auth_window: float = 30.0
    cluster_auth_nonces: int = 100_000
    # Why the topic may lose acknowledged writes (kstate.core.durability reasons).
    durability_warnings: tuple[str, ...] = ()
    # TLS to peers (web/tls.py), set when the node serves HTTPS; None: plain HTTP.
    peer_ssl: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def auth(self) -> AuthConfig:
        """What the check of writes needs (web/auth.py)."""
        return AuthConfig(token=self.api_token, url=self.url, window=self.cluster_auth_window,
                          not_before=self.bound_at, max_body=self.max_body)


@dataclass(frozen=True, slots=True)
class Services:
    """The HTTP layer's collaborators, built once (build_services)."""
    config: HttpConfig
    router: RouterHandle
    state: StateHandle
    writer: WriterHandle
    proxy: Proxy
    feed: FeedHandle | None
    decider: Decider
    metrics: Metrics
    nonces: NonceCache | None  # None without an API token


def build_services(config: HttpConfig, *, router: RouterHandle, state: StateHandle,
                   writer: WriterHandle, proxy: Proxy, feed: FeedHandle | None,
                   loop_lag: LoopLag | None = None,
                   producer_starts: Callable[[], int] | None = None) -> Services:
    """The services object, with its decision, metrics and replay cache."""
    nonces = (NonceCache(config.cluster_auth_nonces, config.cluster_auth_window)
              if config.api_token else None)
    metrics = Metrics(config.url, config.topic, config.group, config.started_at,
                      router=router, state=state, writer=writer, proxy=proxy, feed=feed,
                      nonces=nonces, durability=config.durability_warnings,
                      loop_lag=loop_lag, producer_starts=producer_starts)
    return Services(config=config, router=router, state=state, writer=writer, proxy=proxy,
                    feed=feed, decider=Decider(router, proxy), metrics=metrics, nonces=nonces)
