"""kstate: a CRUD service whose only database is a compacted Kafka topic.

Layers, bottom to top; each imports only layers below it (import-linter checks it,
see ``[tool.importlinter]`` in pyproject.toml):

- ``kstate.core``    pure: partitioner, users, state table, assignment, messages, wire
- ``kstate.bridge``  the Kafka bridge (the only aiokafka importer)
- ``actors``         trio tasks talking over memory channels
- ``web``            HTTP: one read/write decision, one renderer, routes, forwarding
- ``kstate.node``    the composition root, with ``kstate.cli`` and ``kstate.settings``

``kstate.client`` (the routing-aware client) stands apart: it needs only the core.
"""
