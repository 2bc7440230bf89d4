"""What each setting of a node is, for people: its type and one-line help (the order of
``kstate node --help`` and of the README's table), its env var and flag names, and which
ones are secrets that are never taken as flags. Defaults live on
:class:`kstate.settings.Settings`; a unit test keeps the two in step."""

from __future__ import annotations

# name -> (type, help). Order is the order of --help and of the README table.
FIELDS: dict[str, tuple[type, str]] = {
    "bootstrap": (str, "Kafka bootstrap servers, host:port[,host:port]"),
    "topic": (str, "compacted topic holding the users (created if missing)"),
    "partitions": (int, "partitions of the topic when kstate creates it"),
    "replication": (int, "replication factor of the topic when kstate creates it"),
    "group": (str, "consumer group shared by every node of one cluster"),
    "listen": (str, "host:port the HTTP server binds (port 0 = any free port)"),
    "advertise": (str, "host:port other nodes use to reach this one (default: listen)"),
    "instance_id": (str, "static group membership id (restart without rebalance)"),
    "session_timeout_ms": (int, "group session timeout; heartbeat is a sixth of it"),
    "catchup_timeout": (float, "seconds a read waits for its partition to catch up"),
    "write_timeout": (float, "seconds a write may take (produce + apply) before 503"),
    "proxy_timeout": (float, "seconds a request forwarded to the owner may take; 0: the "
                             "owner's worst case, 2*write_timeout + catchup_timeout + 3 "
                             "(a set value may not be shorter)"),
    "max_body": (int, "largest request body in bytes (413 above)"),
    "http_max_connections": (int, "open HTTP connections (websockets included); one more "
                                  "is answered 503 and closed"),
    "http_head_timeout": (float, "seconds a request head may take to arrive (408 after)"),
    "http_body_timeout": (float, "seconds a request body may take after its head (408 "
                                 "after)"),
    "http_idle_timeout": (float, "seconds an idle keep-alive connection stays open"),
    "http_send_timeout": (float, "seconds one write of an answer (or websocket message) may "
                                 "take to a client that reads slowly; the connection is "
                                 "closed after"),
    "http_max_head_bytes": (int, "largest request line + headers in bytes (431 above)"),
    "tls_certfile": (str, "PEM certificate (chain) of this node's HTTPS; when set the port "
                          "speaks TLS only (API, dashboard, wss) and peers are called over "
                          "TLS; it must name the advertised host"),
    "tls_keyfile": (str, "PEM private key of tls_certfile"),
    "tls_cafile": (str, "PEM CA(s) that peers' HTTPS certificates are verified with "
                        "(default: the system's CAs)"),
    "max_batch": (int, "most records the consumer hands over in one batch"),
    "compression": (str, "codec of the batches this node writes: none, gzip, snappy, lz4 or "
                         "zstd (it reads every codec whatever this says)"),
    "standby": (bool, "keep a copy of every partition to answer reads (fenced) while "
                      "their owner is down; costs memory (true/false)"),
    "serve_isolated": (bool, "answer reads (and decide If-Match and deletes of missing "
                             "keys) from memory even when this node cannot prove it still "
                             "owns the partition (cut off from Kafka): trades the "
                             "no-stale-read promise for availability (true/false)"),
    "log_level": (str, "DEBUG, INFO, WARNING or ERROR"),
    "log_format": (str, "kv (key=value lines) or json"),
    "security_protocol": (str, "Kafka security: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    "sasl_mechanism": (str, "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
    "sasl_username": (str, "SASL user name (with SASL_PLAINTEXT / SASL_SSL)"),
    "sasl_password": (str, "SASL password; env var only, never logged"),
    "ssl_cafile": (str, "PEM file of the CA(s) that signed the brokers' certificates"),
    "ssl_certfile": (str, "PEM client certificate for TLS client authentication"),
    "ssl_keyfile": (str, "PEM private key of ssl_certfile"),
    "api_token": (str, "when set, PUT/DELETE need Authorization: Bearer <token>; env var "
                       "only (or api_token_file), never logged"),
    "api_token_file": (str, "file holding the API token (read once at start; one trailing "
                            "newline dropped)"),
    "sasl_password_file": (str, "file holding the SASL password (read once at start; one "
                                "trailing newline dropped)"),
    "cluster_auth_window": (float, "seconds a node signature of a forwarded write is valid "
                                   "before or after its time (node clocks must agree well "
                                   "within it)"),
    "cluster_auth_nonces": (int, "node signatures remembered against replay; when full, "
                                 "forwarded writes get 503 until old ones expire"),
    "require_durable": (bool, "refuse to start (exit 2) when the topic can lose acknowledged "
                              "writes: replication 1, min.insync.replicas < 2, unclean "
                              "leader election, retention that deletes records (delete "
                              "policy, finite retention.ms or retention.bytes), "
                              "min.compaction.lag.ms < 1 h (true/false)"),
    "feed_max_subscribers": (int, "most /changes websockets open at once on this node (503 "
                                  "above)"),
    "feed_max_resumed": (int, "most /changes subscribers replaying with a Kafka reader of "
                              "their own (from=...) at once (503 above)"),
    "feed_stall_timeout": (float, "seconds a /changes subscriber may leave its queue full "
                                  "(reading nothing) before it is cut off (close 4001)"),
}

# Secrets a flag would show to every user of `ps`: from the environment or a file only.
ENV_ONLY = frozenset({"sasl_password", "api_token"})
# file setting -> the secret it holds
SECRET_FILES = {"api_token_file": "api_token", "sasl_password_file": "sasl_password"}


def env_name(field: str) -> str:
    return "KSTATE_" + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")
