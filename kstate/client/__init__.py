"""A routing-aware kstate client: sends each request straight to the owner of its key.

    async with KstateClient(["127.0.0.1:8080"]) as kc:
        etag = await kc.put("ada@example.com", "Ada")
        user = await kc.get("ada@example.com")          # {"name": ..., "email": ...}
        await kc.delete("ada@example.com", if_match=etag)

It caches the routing table of ``/groupinfo`` (``{"<topic>-<p>": "host:port"}``, its
generation in the ``kstate-generation`` header), computes the partition of a key itself
with Kafka's murmur2 partitioner (:func:`kstate.core.partitioner.partition_for`, what
the nodes use) and sends ``GET|PUT|DELETE /users/{email}`` to the partition's owner, so
no node has to proxy the request (docs/design.md, "Performance": the proxy hop costs
about as much as the request itself).

When the table turns out stale, it refreshes it and retries, at most ``retries`` times:
- 503 (owner moving, catching up or unknown): refresh; if the new table names another
  owner, retry at once, else wait ``Retry-After`` (capped at ``max_retry_after``);
- no connection (owner gone): mark that node down for a moment, refresh, back off, retry;
  while a key's owner is unknown or down, the request goes to any other known node (the
  table's members, then the seeds), which forwards it or refuses it with 503;
- 421 or a 3xx: refresh and retry (kstate sends neither today; a front proxy may);
  so too any other 5xx (a node's 500 ``internal_error``, a front proxy's 502 or 504),
  a write's only as below.
A node that no longer owns a key forwards the request to the new owner and answers
exactly what the owner answered (web/proxy.py copies status, headers and body), so such
an answer is correct but cannot be told from a direct one; the table is therefore also
refreshed when it is older than ``max_table_age`` seconds (by the next request, one
``/groupinfo`` per period; concurrent requests keep using the current table meanwhile).

Usable from trio or asyncio (httpcore and anyio inside); one instance is safe to share
between concurrent tasks. Keep-alive connections are pooled per node, at most
``max_connections`` (default 100) to each: a node that stops answering holds only its
own until ``timeout``, and requests for the other nodes' keys go on. Pools exist for
the nodes known (the table's members, while it is incomplete the last complete table's
too, and the seeds) and for a node that left while requests to it are under way.

Retrying a write: PUT and DELETE without ``If-Match`` are retried after any transport
error (writing the same value twice leaves the same state). With ``If-Match``, a write
whose request may have reached the node (the answer was lost) is not retried: the
retry could answer 412 for the client's own write. It raises :class:`Unavailable` with
code ``outcome_unknown`` instead; so does a 5xx that does not say the write was not
applied: only a 503 with a code of :data:`NOT_APPLIED_CODES` does (a forwarding node's
``owner_not_reached`` among them: the owner never got the request, so the client
refreshes and retries); :data:`AMBIGUOUS_WRITE_CODES` (the owner's ``write_timeout``,
``broker_unavailable`` or ``write_unconfirmed``, a forwarding node's ``owner_no_answer``,
a stopping node's ``shutting_down``) say it may have been, as does a 500
``internal_error`` (README, "Errors") or a front proxy's 502 or 504 (it got no answer
from a node the write may have reached), and a code the client does not know (a newer
node's, a front proxy's 503 without kstate's JSON body) says nothing. A
write without ``If-Match`` that gets no success within its retries, after any attempt
that may have been applied, also raises ``outcome_unknown`` (whatever the last refusal
was, e.g. ``key_busy`` behind its own earlier, unconfirmed attempt, or an answer it does
not retry, such as a 408, which speaks only of the later attempt).

``timeout`` (per attempt, default 25 s) bounds waiting for a pooled connection
(connecting, TLS included: at most 2 s) and, in all, the time from sending the request
to the last byte of its answer: a node that sends its answer a byte at a time is cut
off there too (a read goes to another node, a write that may have reached it counts as
above). It is above what a node may take to answer a write with the default settings
(``owner_worst_case``: 18 s, kstate/settings.py, plus up to 2 s a forwarding node may
wait for a newer routing table first): a shorter one turns answers the node would give
into ``outcome_unknown``, or into a second copy of an unconditional write while the
first is still pending.

``refresh_timeout`` (default 2 s) bounds each ``/groupinfo`` a refresh asks, whole: a
node answers it from memory, so one that takes longer is stuck (stopped, paused) and
the next node is asked; requests that need the table wait for the refresh meanwhile. A
``/groupinfo`` goes on a connection of its own, closed after the answer: a node serves
it through hypercorn and keeps that connection there, so pooled, it would take every
later request on it off the lean front.

A table is incomplete unless it lists an owner for every partition 0..n-1; an entry
whose url is no ``host:port`` a node could dial (the nodes' own rule,
kstate/core/assignment.py, under which they list no owner for it) names none. A node's
url is read as the nodes read it: the port after the last colon, so an IPv6 address
may come with or without brackets. A node states n with the table (the
``kstate-partitions`` header), so one without its last partitions (whose owner has a
url no peer can dial: the nodes list no owner for them) is incomplete even as the
client's first table; from a node that does not send it, a table listing fewer
partitions than a complete one of the same topic before is taken as incomplete (a
topic's partitions are never removed; a topic recreated smaller under the same name
would have every request of this client instance go to any node, forwarded from
there). A stated count that is not one makes that node's answer unusable.

When every node answers an incomplete ``/groupinfo`` (all just restarted, none in the
group yet), the client routes every request to any known node meanwhile, and keeps the
members of its last complete table among the nodes it knows (to ask and to fall back
to), so that it does not depend on the seeds alone until a complete table comes.

HTTPS: ``KstateClient(seeds, tls=ssl_context)`` talks to nodes that have a
``tls_certfile``, verifying them with the context.

API token: ``KstateClient(seeds, token=...)`` for nodes with ``KSTATE_API_TOKEN`` (their
writes need it: 401 ``unauthorized`` without). It goes, as ``Authorization: Bearer``, on
every attempt of every PUT and DELETE, retries included; a node that forwards a write
signs it for the owner instead (web/auth.py). Reads and ``/groupinfo`` are open and
never carry it. Without ``tls`` it crosses the network in clear (deploy/SECURITY.md).
The client logs nothing, and no error it raises quotes the token.
"""

from __future__ import annotations

from kstate.client._client import ClientStats as ClientStats
from kstate.client._client import KstateClient as KstateClient
from kstate.client._client import Versioned as Versioned
from kstate.client._errors import AMBIGUOUS_WRITE_CODES as AMBIGUOUS_WRITE_CODES
from kstate.client._errors import NOT_APPLIED_CODES as NOT_APPLIED_CODES
from kstate.client._errors import KstateError as KstateError
from kstate.client._errors import PreconditionFailed as PreconditionFailed
from kstate.client._errors import Unavailable as Unavailable
from kstate.client._table import Table as Table
from kstate.client._table import normalize_url as normalize_url
from kstate.core.wire import user_path as user_path
