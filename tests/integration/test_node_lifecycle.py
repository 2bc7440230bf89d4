"""Issue 3: graceful shutdown on SIGTERM/SIGINT (in-flight requests finish, the node
leaves the group, exit 0 within a few seconds) and the CLI (invalid settings fail
fast with one line on stderr and exit 2; ``--help`` works)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import trio

from kstate.node import TOPIC_WAIT, http_drain, longest_shutdown
from kstate.settings import Settings
from tests.support.http1 import connect, parse_replies, read_replies, read_until_closed
from tests.support.owners import keys_of
from tools import topic as load
from tools.procs import REPO, Node, free_port, wait_ready, wait_stable

EXIT_WITHIN = 5.0  # "a few seconds" (graceful_timeout is 5 s; a clean stop needs far less)


async def send_partial_put(node: Node, path: str, body: bytes, sent: int) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", node.port)
    head = (f"PUT {path} HTTP/1.1\r\nHost: {node.url}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    await stream.send_all(head + body[:sent])
    return stream


async def finish_and_read(stream: trio.SocketStream, rest: bytes
                          ) -> tuple[int, dict[str, str], bytes]:
    async with stream:
        await stream.send_all(rest)
        data = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                assert chunk, f"connection closed before a response: {data!r}"
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(body) < length:
                chunk = await stream.receive_some(65536)
                assert chunk, "connection closed in the middle of the body"
                body += chunk
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_answers_in_flight_requests_leaves_group_exits_0(
        make_node, client, kafka_bootstrap, names, artifacts, sig):
    """Requests still uploading their body when the signal comes each get a whole,
    truthful answer: 2xx and the record is in Kafka, or 503 + Retry-After (the node
    stopped serving its partitions to hand them over) and nothing was written. No
    reset, no 500. Then the node leaves the group at once and exits 0."""
    node = make_node()
    await wait_ready(client, node)
    r = await client.put(f"{node.base}/users/before@example.com", json={"name": "Before"})
    assert r.status_code == 201  # the client keeps this connection alive, idle
    state, members = await load.group_state(kafka_bootstrap, names["group"])
    assert (state, members) == ("Stable", 1)

    # three requests in flight: headers and part of the body sent, the rest held back
    emails = [f"inflight{i}@example.com" for i in range(3)]
    bodies = [load.user_bytes(e, f"In Flight {i}") for i, e in enumerate(emails)]
    streams = []
    for i, (email, body) in enumerate(zip(emails, bodies, strict=True)):
        path = f"/users/{email}" if i % 2 == 0 else f"/user?email={email}"
        streams.append(await send_partial_put(node, path, body, sent=10))
    await trio.sleep(0.3)

    t0 = time.monotonic()
    node.signal(sig)
    await trio.sleep(0.3)
    with pytest.raises(OSError, match="connect"):  # no new connection is accepted
        await trio.open_tcp_stream("127.0.0.1", node.port)
    assert node.alive()  # still answering what it had
    answers = [await finish_and_read(stream, body[10:])
               for stream, body in zip(streams, bodies, strict=True)]
    code = await node.wait_exit(timeout=20)
    exit_seconds = time.monotonic() - t0
    assert code == 0, node.log_text()[-3000:]
    assert exit_seconds <= EXIT_WITHIN + 0.6, exit_seconds  # 0.6 s: the pauses above
    assert "Traceback" not in node.log_text()

    # left the group: empty at once, not after the 6 s session timeout
    state, members = await load.group_state(kafka_bootstrap, names["group"])
    assert (state, members) == ("Empty", 0)
    raw = await load.read_all(kafka_bootstrap, names["topic"])
    values = {rec.key: rec.value for recs in raw.values() for rec in recs}
    assert values[b"before@example.com"] == load.user_bytes("before@example.com", "Before")
    for i, (email, body, (status, headers, answer)) in enumerate(
            zip(emails, bodies, answers, strict=True)):
        if status in (200, 201):
            assert values[email.encode()] == body  # acknowledged: really in Kafka
            if i % 2 == 0:
                assert answer == body
        else:
            assert status == 503, (status, answer)
            assert headers["retry-after"].isdigit()
            assert json.loads(answer)["error"] in ("not_owner", "rebalancing", "no_owner")
            assert email.encode() not in values  # refused: nothing written
    statuses = [a[0] for a in answers]
    (artifacts / "shutdown.json").write_text(json.dumps(
        {"signal": sig.name, "exit_seconds": round(exit_seconds, 3), "statuses": statuses}))
    print(f"{sig.name}: exit 0 after {exit_seconds:.3f} s; in-flight answers {statuses}")


async def test_sigterm_answers_a_forward_the_owner_holds_past_the_drain(
        make_node, client, artifacts):
    """A forwarded write may take the owner up to the proxy deadline (18 s by
    default), longer than a stopping node drains HTTP (6 s). Such a request is still
    answered before its connection closes: 503 ``owner_no_answer`` + Retry-After, the
    truth (the owner got it; the write may or may not apply), once the drain deadline
    passes, on the lean path and on a connection handed over to hypercorn alike. The
    owner is frozen (SIGSTOP) so that the forwarded requests hang."""
    a = make_node()
    await wait_ready(client, a)  # A creates the topic
    b = make_node()
    table = await wait_stable(client, [a, b], 10)
    lean_key, handed_key = keys_of(b.url, table, 2, prefix="drain")
    drain = http_drain(Settings())  # the nodes run the default write_timeout

    def put(email: str) -> bytes:
        body = load.user_bytes(email, "Drained")
        return (f"PUT /users/{email} HTTP/1.1\r\nHost: {a.url}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode() + body

    lean = await connect(a.url)
    handed = await connect(a.url)  # its first request is not hot: hypercorn serves it
    await handed.send_all(f"GET /healthz HTTP/1.1\r\nHost: {a.url}\r\n\r\n".encode())
    [health] = await read_replies(handed, 1)
    assert health.status == 200
    b.signal(signal.SIGSTOP)
    try:
        await lean.send_all(put(lean_key))
        await handed.send_all(put(handed_key))
        await trio.sleep(0.5)  # A forwarded both; B, frozen, answers neither
        t0 = time.monotonic()
        a.term()
        replies: dict[str, tuple[bytes, float]] = {}

        async def read(name: str, stream: trio.SocketStream) -> None:
            data = await read_until_closed(stream, timeout=drain + 5)
            replies[name] = (data, time.monotonic() - t0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, "lean", lean)
            nursery.start_soon(read, "handed", handed)
        code = await a.wait_exit(timeout=longest_shutdown(Settings()) + 5)
        exit_seconds = time.monotonic() - t0
    finally:
        b.signal(signal.SIGCONT)
    assert code == 0, a.log_text()[-3000:]
    for name, (data, seconds) in replies.items():
        assert data, f"{name}: the connection closed without an answer after {seconds:.2f} s"
        [reply] = parse_replies(data)
        assert reply.status == 503, (name, reply)
        assert reply.headers[b"retry-after"].isdigit(), (name, reply)
        assert reply.headers[b"content-type"] == b"application/json", (name, reply)
        doc = reply.json()
        assert isinstance(doc, dict), (name, doc)
        assert doc["error"] == "owner_no_answer", (name, doc)
        assert "may or may not have been applied" in doc["message"], (name, doc)
        # at the drain deadline, not before (the owner might still have answered)
        # and not after more than the bounded write of that answer
        assert drain - 0.5 <= seconds <= drain + 2.0, (name, seconds)
    assert exit_seconds <= longest_shutdown(Settings()), exit_seconds
    assert "Traceback" not in a.log_text()
    (artifacts / "shutdown-forwarded.json").write_text(json.dumps(
        {name: round(seconds, 3) for name, (_, seconds) in replies.items()}))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_idle_node_exits_0_quickly(make_node, client, artifacts, sig):
    node = make_node()
    await wait_ready(client, node)
    for i in range(5):  # leave idle keep-alive connections behind
        r = await client.get(f"{node.base}/users/nobody{i}@example.com")
        assert r.status_code == 404
    t0 = time.monotonic()
    node.signal(sig)
    code = await node.wait_exit(timeout=20)
    exit_seconds = time.monotonic() - t0
    assert code == 0, node.log_text()[-3000:]
    assert exit_seconds < 3.0, exit_seconds
    (artifacts / "shutdown-idle.json").write_text(json.dumps(
        {"signal": sig.name, "exit_seconds": round(exit_seconds, 3)}))
    print(f"{sig.name} (idle, keep-alive open): exit 0 after {exit_seconds:.3f} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_repeated_until_the_node_exits_still_exits_0(make_node, client, sig):
    """An impatient supervisor or operator (Ctrl-C again and again): the same signal
    every few milliseconds from the first until the process is gone. The node stops as
    for one signal, exit 0, no traceback. A signal that landed once the node had
    stopped, as the process exited, killed it (143 for SIGTERM) or raised
    KeyboardInterrupt (130)."""
    node = make_node()
    await wait_ready(client, node)
    with trio.fail_after(20):
        while node.alive():
            node.signal(sig)
            await trio.sleep(0.005)
    code = await node.wait_exit()
    text = node.log_text()
    assert code == 0, text[-3000:]
    assert "event=node_stopped" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_while_the_process_starts_exits_0(make_node, sig):
    """A stop signal a moment after the process began, while Python still imports the
    node (about half a second): the node stops before it starts, exit 0. It was
    killed by the signal's default action (-15; SIGINT: a KeyboardInterrupt)."""
    node = make_node()
    await trio.sleep(0.15)
    assert node.alive()
    node.signal(sig)
    code = await node.wait_exit()
    text = node.log_text()
    assert code == 0, text[-3000:]
    assert f"event=signal name={sig.name}" in text
    assert "Traceback" not in text


# -- CLI ------------------------------------------------------------------------------

def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 20.0
            ) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KSTATE_")}
    # nothing listens there: a node that did not fail fast would wait for Kafka
    clean["KSTATE_BOOTSTRAP"] = f"127.0.0.1:{free_port()}"
    clean.update(env or {})
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "kstate", *args], env=clean, cwd=REPO,
                         capture_output=True, text=True, timeout=timeout, check=False)
    return res, time.monotonic() - t0


INVALID = [
    ("bad_port", ["--listen", "127.0.0.1:99999"], {}, "listen"),
    ("port_not_a_number", ["--listen", "127.0.0.1:http"], {}, "listen"),
    ("listen_without_port", ["--listen", "127.0.0.1"], {}, "listen"),
    ("wildcard_listen_without_advertise", ["--listen", "0.0.0.0:8080"], {}, "advertise"),
    ("wildcard_listen_from_env", [], {"KSTATE_LISTEN": "[::]:8080"}, "advertise"),
    ("wildcard_advertise", ["--listen", "0.0.0.0:8080", "--advertise", "0.0.0.0:8080"], {},
     "advertise"),
    ("partitions_zero", ["--partitions", "0"], {}, "partitions"),
    ("partitions_env_zero", [], {"KSTATE_PARTITIONS": "0"}, "partitions"),
    ("unknown_log_level", ["--log-level", "chatty"], {}, "log_level"),
    ("non_integer_env", [], {"KSTATE_PARTITIONS": "ten"}, "KSTATE_PARTITIONS"),
    ("float_for_int_env", [], {"KSTATE_SESSION_TIMEOUT_MS": "6000.5"},
     "KSTATE_SESSION_TIMEOUT_MS"),
    ("non_number_flag", ["--catchup-timeout", "soon"], {}, "catchup_timeout"),
    ("zero_catchup_timeout", ["--catchup-timeout", "0"], {}, "catchup_timeout"),
    ("bad_bootstrap", ["--bootstrap", "localhost"], {}, "bootstrap"),
    ("port_superscript_digit", [], {"KSTATE_LISTEN": "127.0.0.1:\u00b2"}, "listen"),
    ("advertise_arabic_indic_port", [], {"KSTATE_ADVERTISE": "node1:\u0668\u0660\u0668\u0660"},
     "advertise"),
    ("write_timeout_rounds_to_0_ms", ["--write-timeout", "0.0005"], {}, "write_timeout"),
    ("nan_http_idle_timeout", [], {"KSTATE_HTTP_IDLE_TIMEOUT": "nan"}, "http_idle_timeout"),
    ("bad_topic_name", ["--topic", "us er"], {}, "topic"),
    ("unknown_flag", ["--no-such-flag", "1"], {}, "--no-such-flag"),
    ("flag_without_value", ["--partitions"], {}, "--partitions"),
]


@pytest.mark.parametrize(("args", "env", "mentions"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_settings_exit_2_with_one_line(args, env, mentions):
    res, seconds = run_cli("node", *args, env=env)
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("kstate: ")
    assert mentions in lines[0]
    assert res.stdout == ""
    assert seconds < 10, seconds  # it never waited for Kafka


def test_flag_beats_env_and_valid_settings_get_past_validation():
    # the env var alone would be refused; the flag wins, so the refusal is about the
    # next invalid value (log level): proves the flag replaced the env value
    res, _ = run_cli("node", "--partitions", "3", "--log-level", "nope",
                     env={"KSTATE_PARTITIONS": "0"})
    assert res.returncode == 2
    assert "log_level" in res.stderr
    assert "partitions" not in res.stderr


def test_node_help_lists_every_flag_and_env_var():
    res, seconds = run_cli("node", "--help")
    assert res.returncode == 0, res.stderr
    from kstate.settings import describe

    for flag, env, _default, _text in describe():
        if flag != "-":
            assert flag in res.stdout
        assert env in res.stdout or flag == "-"
    assert seconds < 10


def test_settings_command_and_usage():
    res, _ = run_cli("settings")
    assert res.returncode == 0
    from kstate.settings import describe

    for _flag, env, default, _text in describe():
        assert env in res.stdout
        assert default in res.stdout
    res, _ = run_cli()
    assert res.returncode == 2
    assert "usage" in res.stdout
    res, _ = run_cli("frobnicate")
    assert res.returncode == 2
    assert "usage" in res.stderr


def test_kstate_console_script():
    script = os.path.join(os.path.dirname(sys.executable), "kstate")
    assert os.path.exists(script), script
    res = subprocess.run([script, "node", "--partitions", "0"], capture_output=True, text=True,
                         timeout=20, check=False,
                         env={k: v for k, v in os.environ.items() if not k.startswith("KSTATE_")})
    assert res.returncode == 2
    assert res.stderr.strip().startswith("kstate: partitions:")
    assert len(res.stderr.strip().splitlines()) == 1


def test_valid_settings_start_and_stop_cleanly(kafka_bootstrap, names, tmp_path):
    # the CLI with only flags (no env) starts a node that answers and stops on SIGTERM
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSTATE_")}
    log_path = tmp_path / "node.log"
    log = open(log_path, "wb")  # closed right after the child has it
    proc = subprocess.Popen(
        [sys.executable, "-m", "kstate", "node", "--bootstrap", kafka_bootstrap,
         "--listen", f"127.0.0.1:{port}", "--topic", names["topic"], "--group", names["group"],
         "--session-timeout-ms", "6000"], env=env, cwd=REPO,
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(trust_env=False, timeout=2) as c:
            while True:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    if c.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_sigusr1_prints_every_threads_stack_and_the_node_keeps_serving(
        make_node, client: httpx.AsyncClient) -> None:
    node = make_node()
    await wait_ready(client, node)
    before = node.log_text()
    node.signal(signal.SIGUSR1)
    with trio.fail_after(10):
        while "Current thread" not in node.log_text()[len(before):]:
            await trio.sleep(0.05)
    dump = node.log_text()[len(before):]
    assert dump.count("Thread 0x") >= 2, dump  # trio's thread and the Kafka bridge's
    assert node.alive()
    assert (await client.get(f"{node.base}/healthz")).status_code == 200


async def test_session_timeout_the_broker_refuses_exits_2_naming_both_settings(make_node):
    # A default broker's group.min.session.timeout.ms is 6000; kstate accepts 1000 (a
    # broker may allow it). The JoinGroup refusal is a setting's fault: one line, exit
    # 2, not event=node_crashed with a traceback (exit 1).
    node = make_node(KSTATE_SESSION_TIMEOUT_MS="1000")
    with trio.fail_after(60):
        code = await node.wait_exit(60)
    text = node.log_text()
    assert code == 2, text[-3000:]
    refused = [line for line in text.splitlines() if "event=node_refused" in line]
    assert len(refused) == 1, text[-3000:]
    assert "reason=group_settings" in refused[0]
    assert "session_timeout_ms=1000" in refused[0]
    assert "KSTATE_SESSION_TIMEOUT_MS" in refused[0]
    assert "group.min.session.timeout.ms" in refused[0]
    assert "Traceback" not in text
    assert "event=node_crashed" not in text


# Another application's consumer in the group kstate is told to use (aiokafka's
# default assignor): it prints "joined" once it holds its partition, then consumes
# until killed.
FOREIGN_CONSUMER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

async def main(bootstrap, topic, group):
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    while not consumer.assignment():
        await consumer.getmany(timeout_ms=200)
    print("joined", flush=True)
    while True:
        await consumer.getmany(timeout_ms=200)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_group_of_another_application_exits_2_naming_the_group_setting(
        kafka_bootstrap, names, make_node):
    # Kafka refuses a JoinGroup whose assignor no member of the group shares
    # (INCONSISTENT_GROUP_PROTOCOL): a setting's fault (the group is another
    # application's), not a crash (exit 1, traceback).
    other = await trio.lowlevel.open_process(
        [sys.executable, "-c", FOREIGN_CONSUMER, kafka_bootstrap, names["topic"] + "-other",
         names["group"]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        assert other.stdout is not None
        out = b""
        with trio.fail_after(60):
            while b"joined\n" not in out:
                got = await other.stdout.receive_some()
                assert got, out
                out += got
        node = make_node()
        code = await node.wait_exit(60)
    finally:
        other.kill()
        await other.wait()
    text = node.log_text()
    assert code == 2, text[-3000:]
    refused = [line for line in text.splitlines() if "event=node_refused" in line]
    assert len(refused) == 1, text[-3000:]
    assert "reason=group_settings" in refused[0]
    assert names["group"] in refused[0]
    assert "KSTATE_GROUP" in refused[0]
    assert "Traceback" not in text
    assert "event=node_crashed" not in text


async def test_kafka_unreachable_at_start_exits_2_with_one_line_naming_the_setting(
        artifacts):
    """Nothing answers at the bootstrap address (a port with nothing listening, a name
    that does not resolve): after TOPIC_WAIT the node exits 2 with one line naming the
    address and the setting, as README says (it exited 1 with event=node_crashed and a
    traceback)."""
    addresses = [f"127.0.0.1:{free_port()}", "kstate-no-such-host.invalid:9092"]
    nodes = [Node(bootstrap=a, topic="t-unreachable", group="g-unreachable",
                  log_dir=artifacts).start() for a in addresses]
    try:
        for address, node in zip(addresses, nodes, strict=True):
            code = await node.wait_exit(TOPIC_WAIT + 30)
            text = node.log_text()
            assert code == 2, text[-3000:]
            assert "event=kafka_wait" in text  # it did wait for Kafka first
            refused = [line for line in text.splitlines() if "event=node_refused" in line]
            assert len(refused) == 1, text[-3000:]
            assert "reason=kafka_unreachable" in refused[0]
            assert address in refused[0]
            assert "KSTATE_BOOTSTRAP" in refused[0]
            assert f"{TOPIC_WAIT:.0f} s" in refused[0]
            assert "Traceback" not in text
            assert "event=node_crashed" not in text
    finally:
        for node in nodes:
            node.stop_now()
