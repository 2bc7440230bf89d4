"""A lean HTTP/1.1 server front and pooled client, self-contained (trio, httptools,
hypercorn and its h11, stdlib; nothing from kstate).

Layers: ``wire`` (request/response values and their bytes) and ``limits`` are the
base, with ``heads`` (checks of a head that hypercorn would answer bare);
``connection`` reads one connection with them; ``handover`` gives a connection to
hypercorn, each HTTP/1.1 one behind a ``guard``; ``server`` accepts, caps, wraps TLS
and drains. ``client`` is separate: a keep-alive pool for node-to-node requests, whose
request bytes ``request_bytes`` checks and writes; ``pipeline`` sends GETs over one
pipelined connection per peer, with the pool for what it sends around.
"""

from __future__ import annotations

from web.http1.client import Answer as Answer
from web.http1.client import ClientError as ClientError
from web.http1.client import NoAnswer as NoAnswer
from web.http1.client import NotSent as NotSent
from web.http1.client import Pool as Pool
from web.http1.client import PoolStatistics as PoolStatistics
from web.http1.handover import hypercorn_config as hypercorn_config
from web.http1.limits import Limits as Limits
from web.http1.request_bytes import InvalidRequest as InvalidRequest
from web.http1.request_bytes import header_ok as header_ok
from web.http1.server import Front as Front
from web.http1.server import bind_listening as bind_listening
from web.http1.server import serve_front as serve_front
from web.http1.stats import FrontStatistics as FrontStatistics
from web.http1.wire import CutOff as CutOff
from web.http1.wire import Request as Request
from web.http1.wire import Response as Response
from web.http1.wire import cut_off_response as cut_off_response
from web.http1.wire import error_response as error_response
from web.http1.wire import is_cancellation as is_cancellation
