"""Client errors found while reading an HTTP request (400/411/413/415): raised by the
request readers, rendered as JSON by web/render.py."""

from __future__ import annotations

from kstate.core.users import InvalidUser


class BadRequest(Exception):
    """A client error found while reading a request; becomes a JSON 4xx."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, exc: InvalidUser) -> BadRequest:
        """An invalid user (email, name, fields) is a 400."""
        return cls(400, exc.code, exc.message)
