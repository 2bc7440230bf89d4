"""Builds the foreign producers once and caches them under ``<repo>/.cache``: the Java tool
as a jar plus a class-data-sharing archive (a JVM then starts in about half the time), and
the franz-go tool as a binary. Each build is keyed by a hash of its sources, so an edit
rebuilds it and an unchanged tree reuses it across test runs. Building blocks, so trio
code calls :func:`java_tool` and :func:`franz_tool`, which build in a worker thread.

A missing ``java``/``javac``/``jar``/``go`` or a failed build raises :class:`ToolError`: the
tests that need these tools must fail, never skip."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CACHE = REPO / ".cache"
JAVA_SOURCE = HERE / "ForeignProducer.java"
FRANZ_DIR = HERE / "franz"
KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"
BUILD_TIMEOUT_S = 600  # a cold Go module download and compile on a busy 2-core machine

# Fast start for short-lived runs; JVM log lines go to stderr so stdout stays JSON only.
JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m",
             "-Xlog:disable", "-Xlog:all=warning:stderr")


class ToolError(Exception):
    """A foreign-producer tool is missing, could not be built, or exited non-zero."""


@dataclass(frozen=True)
class JavaTool:
    """How to start ForeignProducer: ``[*argv, SUBCOMMAND, ...]``; ``key`` names its build."""

    argv: tuple[str, ...]
    key: str


def _need(program: str, why: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise ToolError(f"{program} not found on PATH: {why}")
    return path


def kafka_libs() -> Path:
    """Kafka's jar folder: ``$KAFKA_CACHE/libs``, else ``<repo>/.cache/kafka/libs``."""
    return Path(os.environ.get("KAFKA_CACHE") or CACHE / "kafka") / "libs"


def _digest(paths: Iterable[Path], extra: Sequence[str] = ()) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()[:16]


def _run(argv: Sequence[str], *, cwd: Path, what: str) -> None:
    try:
        res = subprocess.run(list(argv), cwd=cwd, capture_output=True, check=False,
                             timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{what}: timed out after {BUILD_TIMEOUT_S} s") from None
    if res.returncode != 0:
        tail = (res.stdout + res.stderr).decode(errors="replace")[-3000:]
        raise ToolError(f"{what} failed (exit {res.returncode}):\n{tail}")


def _publish(final: Path, build: Path) -> None:
    """Moves a finished build into place; a concurrent builder that won keeps its copy."""
    try:
        build.rename(final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(build, ignore_errors=True)


def _prune(current: Path) -> None:
    """Removes the builds of earlier sources next to ``current`` (a CDS archive is 27 MB)."""
    kind = current.name.split("-")[0]
    for old in current.parent.glob(f"{kind}-*"):
        if old != current and re.fullmatch(rf"{kind}-[0-9a-f]{{16}}", old.name):
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def ensure_kafka_libs() -> Path:
    """Kafka's jars, fetched with ``deploy/kafka/kafka.sh fetch`` if not there yet."""
    libs = kafka_libs()
    if not any(libs.glob("kafka-clients-*.jar")):
        _run([str(KAFKA_SH), "fetch"], cwd=REPO, what="kafka.sh fetch")
    if not any(libs.glob("kafka-clients-*.jar")):
        raise ToolError(f"no kafka-clients jar in {libs}")
    return libs


_java: JavaTool | None = None
_franz: dict[str, Path] = {}
# One build at a time in this process: the partial files are named by process id, so two
# threads building at once would write and rename the same file.
_building = threading.Lock()


def build_java() -> JavaTool:
    """The compiled ForeignProducer, built on first use: javac, a jar, then a class-data
    sharing archive made by a ``warm`` run (it records the jar's final path, so it is made
    after the jar is in place). Blocks: from trio, call :func:`java_tool`."""
    with _building:
        return _build_java()


def _build_java() -> JavaTool:
    global _java
    libs = ensure_kafka_libs()
    java = _need("java", "Java 17+ runs the foreign producer")
    jars = sorted(libs.glob("*.jar"))
    # The archive is valid only for these exact jars and this JVM.
    key = _digest([JAVA_SOURCE], [os.path.realpath(java)]
                  + [f"{j.name}:{j.stat().st_size}:{j.stat().st_mtime_ns}" for j in jars])
    if _java is not None and _java.key == key:
        return _java
    out = CACHE / "producers" / f"java-{key}"
    jsa = out / "ForeignProducer.jsa"
    classpath = f"{out / 'ForeignProducer.jar'}{os.pathsep}{libs / '*'}"
    if not (out / "ForeignProducer.jar").exists():
        javac = _need("javac", "the JDK (not only a JRE) compiles the foreign producer")
        jar = _need("jar", "the JDK's jar tool packs the foreign producer")
        out.parent.mkdir(parents=True, exist_ok=True)
        build = Path(tempfile.mkdtemp(prefix=f"{out.name}.", dir=out.parent))
        try:
            classes = build / "classes"
            _run([javac, "-d", str(classes), "-cp", str(libs / "*"), str(JAVA_SOURCE)],
                 cwd=REPO, what="javac ForeignProducer.java")
            # A jar: a class-data-sharing archive refuses class directories on the path.
            _run([jar, "cf", str(build / "ForeignProducer.jar"), "-C", str(classes), "."],
                 cwd=REPO, what="jar ForeignProducer")
            shutil.rmtree(classes)
            build.chmod(0o755)
            _publish(out, build)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        _prune(out)
    if not jsa.exists():
        part = out / f"ForeignProducer.jsa.{os.getpid()}"
        try:
            _run([java, *JVM_FLAGS, f"-XX:ArchiveClassesAtExit={part}", "-cp", classpath,
                  "ForeignProducer", "warm"], cwd=REPO, what="java ForeignProducer warm")
            part.replace(jsa)
        finally:
            part.unlink(missing_ok=True)
    _java = JavaTool((java, *JVM_FLAGS, f"-XX:SharedArchiveFile={jsa}", "-cp", classpath,
                      "ForeignProducer"), key)
    return _java


def build_franz() -> Path:
    """The franz-go producer binary, ``go build`` on first use (modules from the Go proxy,
    pinned by the committed go.sum). Blocks: from trio, call :func:`franz_tool`."""
    with _building:
        return _build_franz()


def _build_franz() -> Path:
    sources = [FRANZ_DIR / "go.mod", FRANZ_DIR / "go.sum", *FRANZ_DIR.glob("*.go")]
    key = _digest(sources)
    if key in _franz:
        return _franz[key]
    binary = CACHE / "bin" / f"franz-{key}"
    if not binary.exists():
        go = _need("go", "Go builds the franz-go producer (the seed app's client)")
        binary.parent.mkdir(parents=True, exist_ok=True)
        part = binary.with_name(f"{binary.name}.{os.getpid()}")
        try:
            _run([go, "build", "-trimpath", "-buildvcs=false", "-mod=readonly", "-o",
                  str(part), "."], cwd=FRANZ_DIR, what="go build (tools/producers/franz)")
            part.replace(binary)
        finally:
            part.unlink(missing_ok=True)
        _prune(binary)
    _franz[key] = binary
    return binary


async def java_tool() -> JavaTool:
    """:func:`build_java` in a worker thread."""
    return await trio.to_thread.run_sync(build_java)


async def franz_tool() -> Path:
    """:func:`build_franz` in a worker thread."""
    return await trio.to_thread.run_sync(build_franz)
