"""How far one user request got: web/decide.py and web/proxy.py mark it as it goes, and
web/hot.py reads it when the node's HTTP drain deadline cancels the request before it
is answered, to say what the client must assume (see :func:`web.hot.cut_off_outcome`).
"""

from __future__ import annotations


class Progress:
    """What one request did so far (plain flags: set as it goes, read after a cancel)."""

    __slots__ = ("owner", "sent", "writing")

    def __init__(self) -> None:
        self.owner: str | None = None  # forwarded to this owner (its url)
        self.sent = False  # ... and its bytes started to go out: the owner may have it
        self.writing = False  # handed to this node's writer, which may produce its record

    def mark_sent(self) -> None:
        self.sent = True
