"""TLS of the node's HTTP port and of its calls to peers, from PEM files.

With a certificate (``tls_certfile``/``tls_keyfile``) the node's one port speaks TLS
only: the API, the dashboard, ``/metrics`` and the ``/changes`` websocket (wss).
Its calls to peers (forwarding, the dashboard's ``/cluster``) then use TLS too, and
verify each peer's certificate against ``tls_cafile`` (or the system's CAs without
one) for the host of the peer's advertised ``host:port``: each node's certificate
must name the address it advertises (a DNS name, or an IP address SAN).
"""

from __future__ import annotations

import ssl


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """The node's TLS server side: TLS 1.2 or newer, HTTP/1.1 the one protocol offered
    through ALPN. ALPN does not bind what a client sends after the handshake: the
    front itself refuses the HTTP/2 preface (400) and keeps every connection it hands
    to hypercorn on HTTP/1.1 (web/http1/handover.py)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["http/1.1"])
    return context


def peer_context(cafile: str) -> ssl.SSLContext:
    """What the node checks its peers with: certificate chain and host name verified,
    against ``cafile`` (PEM) or, when empty, the system's trusted CAs."""
    context = ssl.create_default_context(cafile=cafile or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context
