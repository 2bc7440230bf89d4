"""Exception groups as trio's nurseries raise them: most hold one error, which callers
want to see as itself."""

from __future__ import annotations


def lone_error(exc: BaseException) -> BaseException:
    """The one exception inside nested one-member groups; ``exc`` itself otherwise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
