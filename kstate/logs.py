"""Logging: one line per event on stderr, key=value (default) or JSON; the formats are
kstate/core/log_lines.py's."""

from __future__ import annotations

import logging
import sys

from kstate.core.log_lines import formatter, parse_fields

__all__ = ["parse_fields", "setup"]


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about every (re)join; keep its warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("hypercorn.error").setLevel(max(logging.WARNING, root.level))
    # httpx logs every request at INFO: one line per forwarded request to the owner.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
