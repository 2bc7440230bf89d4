"""(child process) The node's producer in a process of its own, so that producing runs
on the second core instead of sharing the node's interpreter lock (docs/design.md,
"The producer process"). ``python -m kstate.bridge.producer_process FD``: FD is one end
of a socketpair whose other end the node holds (kstate/bridge/producer_link.py).

It reads the pickled KafkaConfig, starts the producer (given up if the node's end
closes meanwhile: aiokafka's start retries while Kafka is unreachable) and says so,
then produces each request in the order it arrived and answers with the offset or the
error, through a
feed (kstate/bridge/producer_feed.py: a task of its own, which also replaces the
producer once Kafka gave one of its records up); it answers a ping (partition -1) at
once, whatever the producer is doing, so the node can tell it is alive. Its log lines (WARNING
and up) go to the node over the same socket, and the node logs them in its own format
(JSON or key=value); what it logs once that socket is closed (the node is gone) it
writes to stderr itself, in the same format. It exits when the node's end closes (the
node stopped or died): it stops the producer, which sends what it queued, for
PRODUCER_GIVES_UP_S at most (Kafka may be unreachable, and a node killed with kill -9
is not there to kill it), and exits. It never outlives the node by more than that."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable, Coroutine

from kstate.bridge import authz
from kstate.bridge.config import KafkaConfig
from kstate.bridge.produce_wire import (
    PRODUCER_GIVES_UP_S,
    LogLine,
    Reply,
    RequestReader,
    encode_log,
    encode_reply,
)
from kstate.bridge.producer import NodeProducer
from kstate.bridge.producer_feed import Feed
from kstate.core.log_lines import formatter

# named, not __name__: run with -m, this module is __main__
log = logging.getLogger("kstate.bridge.producer_process")
# For the lines the node cannot log (its socket is not up yet, or closed: the node is
# gone): written here in the node's format (key=value until its config says otherwise).
_STDERR = logging.StreamHandler(sys.stderr)
_STDERR.setFormatter(formatter("kv"))


async def serve(fd: int) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_connection(sock=sock)
    loop = asyncio.get_running_loop()
    out = bytearray()

    def flush() -> None:
        if out and not writer.is_closing():
            writer.write(bytes(out))
        out.clear()

    def send(frame: bytes) -> None:
        # One produce response acknowledges many records: their answers leave together,
        # in one write and one wake-up of the node, once this loop turn is done.
        if not out:
            loop.call_soon(flush)
        out.extend(frame)

    root = logging.getLogger()
    to_node = _ToNode(send, writer.is_closing)
    root.removeHandler(_STDERR)
    root.addHandler(to_node)
    try:
        return await _produce(reader, writer, send)
    finally:
        flush()
        root.removeHandler(to_node)
        root.addHandler(_STDERR)


async def _produce(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   send: Callable[[bytes], None]) -> int:
    frames = RequestReader()
    config = None
    while config is None:
        data = await reader.read(65536)
        if not data:
            return 0  # the node went away before it said what to do
        frames.feed(data)
        raw = frames.sized()
        if raw is not None:
            config = pickle.loads(raw)  # the node's own bytes, over a private socketpair
    assert isinstance(config, KafkaConfig)
    _STDERR.setFormatter(formatter(config.log_format))
    producer = NodeProducer(config)
    try:
        if not await _start_unless_node_gone(producer, reader, frames):
            return 0
    except Exception as exc:
        # an ACL missing (IdempotentWrite, the topic's Write): the node stops with one
        # line naming it, where a start that failed otherwise is tried again
        refused = authz.not_authorized(exc, config, "Write", "starting the producer")
        send(encode_reply(Reply(0, None, repr(exc) if refused is None
                                else authz.PREFIX + str(refused))))
        await asyncio.sleep(0)  # the frame leaves (flush runs) before the drain
        await writer.drain()
        return 1
    send(encode_reply(Reply(0, 0)))

    feed = Feed(config, producer, lambda reply: send(encode_reply(reply)))
    feeding = asyncio.create_task(feed.run())

    def ended(_: asyncio.Task[None]) -> None:
        if not feed.closing:  # it failed (a bug): end the process, the node starts another
            writer.close()

    feeding.add_done_callback(ended)
    try:
        while data := await reader.read(65536):
            frames.feed(data)
            for r in frames.requests():
                if r.partition < 0:  # a ping: the node checks this loop still turns
                    send(encode_reply(Reply(r.id, 0)))
                else:  # never awaited here: a ping waits on no record (producer_feed)
                    feed.put(r)
            await writer.drain()
    finally:
        await _stop(feed.finish(feeding), writer)
    return 0


async def _start_unless_node_gone(producer: NodeProducer, reader: asyncio.StreamReader,
                                  frames: RequestReader) -> bool:
    """Start ``producer``; False (start given up) if the node's end closes first. While
    Kafka is unreachable aiokafka's idempotent start retries for ever, and a node
    killed with kill -9 is not there to end this process. What the node sends
    meanwhile is kept in ``frames``. Raises what the start raised."""
    starting = asyncio.create_task(producer.start())
    while True:
        reading = asyncio.create_task(reader.read(65536))
        await asyncio.wait({starting, reading}, return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            reading.cancel()  # (the stream keeps what it had not handed out)
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            starting.result()
            return True
        data = reading.result()
        if data:
            frames.feed(data)
            if not starting.done():
                continue
            starting.result()
            return True
        # the node is gone: no one to produce for, and no one to tell how the start
        # ended (a failure or a late success is moot; either is stopped, bounded)
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(starting, PRODUCER_GIVES_UP_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(producer.stop(), PRODUCER_GIVES_UP_S)
        return False


async def _stop(finish: Coroutine[None, None, None], writer: asyncio.StreamWriter) -> None:
    """Feed what is queued and stop the producer: it sends what it holds, for
    PRODUCER_GIVES_UP_S at most (with Kafka unreachable it would wait for ever); then
    the process exits without it."""
    try:
        await asyncio.wait_for(finish, PRODUCER_GIVES_UP_S)
    except TimeoutError:
        log.warning("event=producer_process_gave_up seconds=%.0f reason=%r",
                    PRODUCER_GIVES_UP_S, "Kafka did not take what it held; exiting without it")
        await asyncio.sleep(0)  # the line leaves for the node (if it is still there)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), 1.0)
        sys.stderr.flush()
        os._exit(3)  # aiokafka's tasks may not end on cancel either: no teardown


class _ToNode(logging.Handler):
    """Sends each log record to the node (stderr once the socket is closing)."""

    def __init__(self, send: Callable[[bytes], None], closing: Callable[[], bool]) -> None:
        super().__init__()
        self._send = send
        self._closing = closing

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self._closing():
                _STDERR.handle(record)
                return
            self._send(encode_log(LogLine(record.levelno, record.name, self.format(record))))
        except Exception:
            self.handleError(record)


def main() -> None:
    # Only the node decides when this ends (its socket closes): a Ctrl-C to the process
    # group, or a service manager's SIGTERM to every process of the unit, must not cut
    # the writes the node is still finishing while it shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    root.addHandler(_STDERR)  # until the node's socket is up (serve)
    sys.exit(asyncio.run(serve(int(sys.argv[1]))))


if __name__ == "__main__":
    main()
