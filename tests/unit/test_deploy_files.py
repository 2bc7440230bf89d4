"""The deploy files checked against the real code.

No container engine runs here, so nothing in deploy/ is ever started by the suite: this
test is what keeps deploy/Dockerfile, deploy/docker-compose.yml and deploy/k8s/*.yaml
true.  It parses them (YAML with ``yaml.safe_load``; the Dockerfile by instructions) and
checks the wiring against the code itself, never against copies of its strings:

- every ``KSTATE_*`` name in deploy/ is a setting :mod:`kstate.settings` really reads,
  and each container's environment loads through ``load_settings`` (so a wildcard
  listen address always comes with an advertise address);
- probe and healthcheck paths are routes of the real app (``web.app.create_app``), and
  the healthcheck commands, run against a live node, pass on /healthz and fail (503)
  on /readyz while the node is not in a group;
- ports agree with ``KSTATE_LISTEN``; brokers, services, selectors and labels refer to
  things that exist; grace periods outlast the session timeout;
- deploy/SECURITY.md's numbers for a lagging feed subscriber are the code's.
"""

from __future__ import annotations

import base64
import importlib
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound

from kstate.node import TOPIC_WAIT, longest_shutdown
from kstate.settings import Settings, SettingsError, describe, load_settings
from tests.support.offline import offline_services
from web.app import create_app
from web.server import FrontSettings, bind, bound_address, build_front, serve
from web.services import Services

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
README = DEPLOY / "README.md"
SECURITY = DEPLOY / "SECURITY.md"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

KNOWN_ENV = {env for _flag, env, _default, _help in describe()}
ENV_REF = re.compile(r"\bKSTATE_[A-Z0-9_]+\b")
K8S_NAMESPACE = "ns-under-test"  # what the downward API would give the pods


# ---------------------------------------------------------------- Dockerfile ----

@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order: comments dropped, ``\\`` continuations joined."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker also drops comment lines inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


@dataclass
class Image:
    """What the final stage of deploy/Dockerfile gives a container."""

    stages: list[list[Instruction]]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> list[Instruction]:
        return self.stages[-1]

    def all(self, keyword: str, stage: list[Instruction] | None = None) -> list[str]:
        return [i.args for i in (stage or self.final) if i.keyword == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"final stage needs exactly one {keyword}, has {found}"
        return found[0]


def load_image() -> Image:
    stages: list[list[Instruction]] = []
    for ins in parse_dockerfile(DOCKERFILE.read_text()):
        if ins.keyword == "FROM":
            stages.append([])
        assert stages, f"{ins.keyword} before the first FROM"
        stages[-1].append(ins)
    image = Image(stages)
    for args in image.all("ENV"):
        for word in shlex.split(args):
            name, eq, value = word.partition("=")
            assert eq, f"ENV {args!r}: use the NAME=value form"
            image.env[name] = value
    return image


def healthcheck_argv(args: str) -> tuple[dict[str, str], list[str]]:
    """(options, exec-form command) of a HEALTHCHECK instruction."""
    options_text, sep, command = args.partition(" CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args!r}"
    options = dict(o.removeprefix("--").split("=", 1) for o in options_text.split())
    argv = json.loads(command)
    assert isinstance(argv, list), "HEALTHCHECK CMD must be the exec (JSON) form"
    return options, [str(a) for a in argv]


# ---------------------------------------------------------------- compose ----

def load_compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    for name, value in raw.items():
        assert value is not None, f"{name}: taken from the host's env; set it in the file"
    return {str(k): str(v) for k, v in raw.items()}


def kstate_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services built from deploy/Dockerfile."""
    out = {}
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build is None:
            continue
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO, f"{name}: build context must be the repository root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name
        out[name] = svc
    return out


def kafka_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items()
            if str(svc.get("image", "")).startswith("apache/kafka:")}


def seconds(duration: str | int) -> float:
    """Compose/Docker durations: 30s, 1m30s, 1500ms, or a bare number of seconds."""
    if isinstance(duration, int):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"duration {duration!r}"
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def host_of(address: str) -> str:
    return address.rpartition(":")[0]


# ---------------------------------------------------------------- kubernetes ----

def load_k8s() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict), path
                docs.append(doc)
    return docs


def k8s_one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def k8s_by_name(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"no {kind} named {name!r} in deploy/k8s"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


_K8S_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def pod_env(docs: list[dict[str, Any]], container: dict[str, Any], pod: str,
            image_env: dict[str, str]) -> dict[str, str]:
    """The environment the kubelet gives ``container`` in pod ``pod``: the image's ENV,
    then envFrom, then env in order; ``$(VAR)`` expands only variables defined by
    envFrom or earlier env entries (a reference to anything else stays as it is)."""
    defined: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "prefix" not in source
        if "secretRef" in source:  # secrets are not in the repository: it must be optional
            assert source["secretRef"].get("optional") is True, source
            continue
        cm = k8s_by_name(docs, "ConfigMap", source["configMapRef"]["name"])
        defined.update(cm["data"])
    downward = {"metadata.name": pod, "metadata.namespace": K8S_NAMESPACE}
    for item in container.get("env", []):
        if "valueFrom" in item:
            value = downward[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            assert isinstance(item["value"], str), f"env {item['name']}: value must be a string"
            value = _K8S_REF.sub(lambda m: defined.get(m[1], m[0]), item["value"])
        defined[item["name"]] = value
    return {**image_env, **defined}


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's target port (a name or a number) as the container's port."""
    ports = container["ports"]
    if isinstance(port, str):
        named = [p["containerPort"] for p in ports if p.get("name") == port]
        assert named, f"no container port named {port!r}"
        return int(named[0])
    assert port in [p["containerPort"] for p in ports], f"port {port} is not declared"
    return port


# ---------------------------------------------------------------- the nodes ----

@dataclass(frozen=True)
class Node:
    """One kstate container in deploy/: where it comes from and what it is given."""

    where: str
    env: dict[str, str]
    expected_host: str  # the name other nodes reach it by
    container_ports: tuple[int, ...]


def compose_nodes() -> list[Node]:
    image = load_image()
    compose = load_compose()
    nodes = []
    for name, svc in kstate_services(compose).items():
        ports = tuple(int(str(p).rpartition(":")[2].split("/")[0]) for p in svc["ports"])
        nodes.append(Node(f"compose:{name}", {**image.env, **compose_env(svc)},
                          expected_host=name, container_ports=ports))
    return nodes


def k8s_nodes() -> list[Node]:
    image = load_image()
    docs = load_k8s()
    sts = k8s_one(docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    nodes = []
    for ordinal in range(sts["spec"]["replicas"]):
        pod = f"{sts['metadata']['name']}-{ordinal}"  # the StatefulSet's naming rule
        host = f"{pod}.{sts['spec']['serviceName']}.{K8S_NAMESPACE}.svc.cluster.local"
        ports = tuple(int(p["containerPort"]) for p in container["ports"])
        nodes.append(Node(f"k8s:{pod}", pod_env(docs, container, pod, image.env),
                          expected_host=host, container_ports=ports))
    return nodes


def all_nodes() -> list[Node]:
    return compose_nodes() + k8s_nodes()


# ---------------------------------------------------------------- a live node ----

def make_app(settings: Settings, url: str | None = None) -> tuple[QuartTrio, Services]:
    """The real app with real (idle) handles: a node that has not joined any group."""
    services = offline_services(url or settings.advertised_url, partitions=settings.partitions,
                                topic=settings.topic, group=settings.group,
                                proxy_timeout=settings.proxy_deadline,
                                catchup_timeout=settings.catchup_timeout)
    return create_app(services), services


@dataclass(frozen=True)
class LiveNode:
    app: QuartTrio
    address: str  # host:port it listens on


@pytest.fixture
async def live_node(nursery: trio.Nursery) -> AsyncIterator[LiveNode]:
    sock = bind("127.0.0.1:0")
    address = bound_address(sock, "127.0.0.1:0")
    app, services = make_app(Settings(listen="127.0.0.1:0"), address)
    stop = trio.Event()
    front = build_front(services, app, FrontSettings(drain_timeout=1.0), None)
    await nursery.start(partial(serve, front, sock, shutdown_trigger=stop.wait))
    try:
        yield LiveNode(app, address)
    finally:
        stop.set()
        await services.proxy.aclose()


def assert_route(app: QuartTrio, path: str) -> None:
    try:
        app.url_map.bind("localhost").match(path, method="GET")
    except NotFound:
        routes = sorted(r.rule for r in app.url_map.iter_rules())
        raise AssertionError(f"{path!r} is no route of the app; routes: {routes}") from None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_check(argv: list[str], env: dict[str, str]) -> trio.CompletedProcess[bytes]:
    """Run a healthcheck command as the container would, with this interpreter."""
    assert argv[0] == "python", f"healthcheck must run the image's python, got {argv[0]!r}"
    return await trio.run_process([sys.executable, *argv[1:]], env=env, check=False,
                                  capture_stdout=True, capture_stderr=True)


# ================================================================ tests ====

def test_every_kstate_name_in_deploy_is_a_setting_the_node_reads() -> None:
    files = [DOCKERFILE, COMPOSE, README, *sorted(K8S.glob("*.yaml"))]
    used = {(path.relative_to(REPO).as_posix(), name)
            for path in files for name in ENV_REF.findall(path.read_text())}
    assert used, "deploy/ names no KSTATE_* setting at all"
    unknown = sorted((path, name) for path, name in used if name not in KNOWN_ENV)
    assert not unknown, f"not settings of kstate.settings: {unknown}"


def test_every_container_env_is_valid_settings() -> None:
    nodes = all_nodes()
    assert len(nodes) == 6, [n.where for n in nodes]  # 3 compose services + 3 pods
    for node in nodes:
        stray = sorted(k for k in node.env if k.startswith("KSTATE_") and k not in KNOWN_ENV)
        assert not stray, f"{node.where}: {stray}"
        try:
            s = load_settings(argv=[], environ=node.env)
        except SettingsError as exc:
            raise AssertionError(f"{node.where}: {exc}") from None
        assert host_of(s.advertised_url) == node.expected_host, node.where
        assert port_of(s.advertised_url) == port_of(s.listen), node.where
        assert port_of(s.listen) in node.container_ports, node.where
    for group in (compose_nodes(), k8s_nodes()):
        loaded = [load_settings(argv=[], environ=n.env) for n in group]
        assert len({s.advertised_url for s in loaded}) == len(loaded)
        assert len({s.instance_id for s in loaded}) == len(loaded)
        assert all(s.instance_id for s in loaded)
        assert len({(s.group, s.topic, s.bootstrap) for s in loaded}) == 1, "one cluster"


def test_dockerfile_builds_the_project_and_runs_the_node_unprivileged(
        capsys: pytest.CaptureFixture[str]) -> None:
    image = load_image()
    for stage in image.stages:
        base = stage[0].args.split()[0]
        m = re.fullmatch(r"python:(\d+)\.(\d+)-slim", base)
        assert m, f"base image {base!r}: python:X.Y-slim expected"
        minimum = re.fullmatch(r">=(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
        assert minimum
        assert (int(m[1]), int(m[2])) >= (int(minimum[1]), int(minimum[2]))
    build = image.stages[0]
    copied = {src.rstrip("/") for args in image.all("COPY", build)
              for src in args.split()[:-1] if not src.startswith("--")}
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    needed = {"pyproject.toml", *(p.split(".")[0] for p in packages)}
    assert needed <= copied or "." in copied, f"the build stage lacks {needed - copied}"
    assert any(re.search(r"\bpip install\b.*\s\.$", r) for r in image.all("RUN", build))
    user = image.one("USER").split(":")[0]
    assert user.isdigit(), "USER must be numeric (runAsNonRoot cannot check a name)"
    assert int(user) != 0, "USER must not be root"
    # The image listens on a wildcard address and leaves the advertise address to each
    # container: baked in, every node would advertise the same one.
    assert "KSTATE_ADVERTISE" not in image.env
    with pytest.raises(SettingsError, match="advertise"):
        load_settings(argv=[], environ=image.env)
    listen = load_settings(argv=[], environ={**image.env, "KSTATE_ADVERTISE": "n:1"}).listen
    exposed = {int(p.split("/")[0]) for args in image.all("EXPOSE") for p in args.split()}
    assert exposed == {port_of(listen)}
    # ENTRYPOINT is the console script pyproject installs, with a sub-command it knows.
    entry = json.loads(image.one("ENTRYPOINT"))
    target = PYPROJECT["project"]["scripts"][entry[0]]
    module, _, func = target.partition(":")
    main = getattr(importlib.import_module(module), func)
    with pytest.raises(SystemExit) as exited:
        main([*entry[1:], "--help"])
    assert exited.value.code == 0
    assert "--bootstrap" in capsys.readouterr().out


def test_the_installed_package_imports_every_module(tmp_path: Path) -> None:
    """The image runs ``pip install .``, not the editable install the suite uses: build
    the same wheel from the project's files and import every module of it, alone."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((REPO / name).read_bytes())
    tops = sorted({p.split(".")[0] for p in
                   PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]})
    for top in tops:
        shutil.copytree(REPO / top, src / top,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "w"),
         str(src)], capture_output=True, text=True, timeout=240)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "w").glob("kstate-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(unpacked)
    sources = sorted(str(p.relative_to(REPO)) for top in tops
                     for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts)
    installed = sorted(str(p.relative_to(unpacked)) for top in tops
                       for p in (unpacked / top).rglob("*.py"))
    assert installed == sources, f"missing from the wheel: {set(sources) - set(installed)}"
    static = sorted(p.name for p in (REPO / "web" / "static").iterdir() if p.is_file())
    assert sorted(p.name for p in (unpacked / "web" / "static").iterdir()) == static
    # Import each module from the wheel's copy (not the checkout the editable install
    # maps), then the console script's --help.
    modules = [s.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
               for s in sources]
    probe = ("import importlib, sys, pathlib\n"
             f"root = pathlib.Path({str(unpacked)!r})\n"
             "sys.path.insert(0, str(root))\n"
             f"for name in {modules!r}:\n"
             "    m = importlib.import_module(name)\n"
             "    assert root in pathlib.Path(m.__file__).parents, (name, m.__file__)\n"
             "from kstate.cli import main\n"
             "main(['node', '--help'])\n")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "--bootstrap" in ran.stdout


def test_dockerfile_healthcheck_path_is_a_route_and_outlasts_kafka_wait() -> None:
    image = load_image()
    options, argv = healthcheck_argv(image.one("HEALTHCHECK"))
    app, _ = make_app(Settings())
    paths = re.findall(r"'(/[a-z/]*)'", argv[-1])
    assert len(paths) == 1, argv
    assert_route(app, paths[0])
    # HTTP listens only once the topic is there (the node waits up to TOPIC_WAIT).
    assert seconds(options["start-period"]) > TOPIC_WAIT
    assert seconds(options["timeout"]) > float(re.findall(r"timeout=(\d+)", argv[-1])[0])


async def test_healthchecks_run_against_a_live_node(live_node: LiveNode) -> None:
    """Run the Dockerfile's and compose's healthcheck commands for real: /healthz passes
    on a node that is not in any group; /readyz fails with 503 (not 404, not refused)."""
    image = load_image()
    _, liveness = healthcheck_argv(image.one("HEALTHCHECK"))
    env = {**image.env, "KSTATE_LISTEN": live_node.address}
    ok = await run_check(liveness, env)
    assert ok.returncode == 0, ok.stderr.decode()
    down = await run_check(liveness, {**env, "KSTATE_LISTEN": f"127.0.0.1:{closed_port()}"})
    assert down.returncode != 0, "the healthcheck cannot fail"

    services = kstate_services(load_compose())
    assert services
    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: exec form healthcheck expected"
        node_env = {**image.env, **compose_env(svc), "KSTATE_LISTEN": live_node.address}
        readiness = await run_check(test[1:], node_env)
        assert readiness.returncode != 0, f"{name}: healthy although the node is in no group"
        assert b"HTTP Error 503" in readiness.stderr, readiness.stderr.decode()


async def test_k8s_probes_hit_real_routes(live_node: LiveNode) -> None:
    docs = load_k8s()
    sts = k8s_one(docs, "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    probes = {kind: container[kind] for kind in ("livenessProbe", "readinessProbe",
                                                 "startupProbe")}
    listen_ports = {port_of(load_settings(argv=[], environ=n.env).listen) for n in k8s_nodes()}
    async with httpx.AsyncClient(base_url=f"http://{live_node.address}") as client:
        status = {}
        for kind, probe in probes.items():
            path = probe["httpGet"]["path"]
            assert_route(live_node.app, path)
            assert {container_port(container, probe["httpGet"]["port"])} == listen_ports
            status[kind] = (await client.get(path)).status_code
    # Liveness and startup must not depend on the group (a rebalance must not restart
    # pods); readiness must (a pod outside the group gets no client traffic).
    assert status == {"livenessProbe": 200, "startupProbe": 200, "readinessProbe": 503}
    startup = probes["startupProbe"]
    budget = startup.get("initialDelaySeconds", 0) + startup["periodSeconds"] * startup[
        "failureThreshold"]
    assert budget > TOPIC_WAIT, "a node still waiting for Kafka would be restarted"


def test_compose_kafka_is_a_three_voter_kraft_cluster() -> None:
    compose = load_compose()
    brokers = kafka_services(compose)
    assert len(brokers) == 3, sorted(brokers)
    pom = (DEPLOY / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version
    ids: dict[str, int] = {}
    for name, svc in brokers.items():
        assert svc["image"] == f"apache/kafka:{version[1]}", "same Kafka as deploy/kafka"
        env = compose_env(svc)
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        listeners = dict(re.fullmatch(r"(\w+)://[^:]*:(\d+)", part).groups()  # type: ignore[union-attr]
                         for part in env["KAFKA_LISTENERS"].split(","))
        controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        voters = {}
        for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","):
            vid, _, address = voter.partition("@")
            voters[host_of(address)] = (int(vid), port_of(address))
        assert set(voters) == set(brokers), f"{name}: voters {sorted(voters)}"
        assert all(port == int(listeners[controller]) for _, port in voters.values())
        ids[name] = int(env["KAFKA_NODE_ID"])
        assert voters[name][0] == ids[name], f"{name}: its voter id is not its node id"
        advertised = env["KAFKA_ADVERTISED_LISTENERS"]
        inter = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
        assert advertised == f"{inter}://{name}:{listeners[inter]}"
        assert base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==").__len__() == 16
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == len(brokers)
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == len(brokers)
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert int(env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"]) == 0
        assert "healthcheck" in svc
    assert len(set(ids.values())) == 3
    envs = [compose_env(svc) for svc in brokers.values()]
    for shared in ("CLUSTER_ID", "KAFKA_CONTROLLER_QUORUM_VOTERS"):
        assert len({e[shared] for e in envs}) == 1, f"{shared} differs between brokers"


def test_compose_nodes_reach_the_brokers_and_the_host() -> None:
    compose = load_compose()
    brokers = kafka_services(compose)
    nodes = kstate_services(compose)
    assert len(nodes) == 3, sorted(nodes)
    client_ports = {}
    for name, svc in brokers.items():
        env = compose_env(svc)
        client_ports[name] = port_of(env["KAFKA_ADVERTISED_LISTENERS"])
    host_ports = []
    for name, svc in nodes.items():
        s = load_settings(argv=[], environ={**load_image().env, **compose_env(svc)})
        for server in s.bootstrap.split(","):
            host = host_of(server.strip())
            assert host in brokers, f"{name}: bootstrap {host!r} is no broker service"
            assert port_of(server) == client_ports[host], f"{name}: {server}"
        assert s.replication == len(brokers)
        deps = svc["depends_on"]
        assert set(deps) >= set(brokers), f"{name}: starts before some broker"
        assert all(deps[b]["condition"] == "service_healthy" for b in brokers)
        assert seconds(svc["stop_grace_period"]) * 1000 > s.session_timeout_ms, name
        assert seconds(svc["stop_grace_period"]) > longest_shutdown(s), name
        assert seconds(svc["healthcheck"]["start_period"]) > TOPIC_WAIT, name
        for mapping in svc["ports"]:
            host_port, _, inner = str(mapping).rpartition(":")
            assert int(inner) == port_of(s.listen), f"{name}: {mapping} misses the listen port"
            host_ports.append(int(host_port))
    assert len(set(host_ports)) == len(host_ports), f"host ports collide: {host_ports}"


def test_k8s_manifests_are_wired_together() -> None:
    docs = load_k8s()
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert "namespace" not in doc["metadata"], "manifests must be namespace-free"
    sts = k8s_one(docs, "StatefulSet")
    spec = sts["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert selects(spec["selector"]["matchLabels"], pod_labels)
    assert spec["replicas"] == 3

    headless = k8s_by_name(docs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    # Peers must resolve a pod that owns partitions while it is still catching up.
    assert headless["spec"]["publishNotReadyAddresses"] is True
    services = [d for d in docs if d["kind"] == "Service"]
    clients = [d for d in services if d["spec"].get("clusterIP") != "None"]
    assert len(clients) == 1, "one Service for clients"
    (container,) = spec["template"]["spec"]["containers"]
    for svc in services:
        assert selects(svc["spec"]["selector"], pod_labels), svc["metadata"]["name"]
        for port in svc["spec"]["ports"]:
            container_port(container, port["targetPort"])

    pdb = k8s_one(docs, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1

    cm_names = [src["configMapRef"]["name"] for src in container["envFrom"]
                if "configMapRef" in src]
    assert cm_names
    for cm_name in cm_names:
        data = k8s_by_name(docs, "ConfigMap", cm_name)["data"]
        bad = {k: v for k, v in data.items() if not isinstance(v, str)}
        assert not bad, f"ConfigMap values must be strings: {bad}"
        assert "KSTATE_BOOTSTRAP" in data
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
    for node in k8s_nodes():
        s = load_settings(argv=[], environ=node.env)
        assert grace * 1000 > s.session_timeout_ms, node.where
        assert grace > longest_shutdown(s), node.where
        assert s.instance_id == node.where.removeprefix("k8s:"), "instance id = pod name"
    resources = container["resources"]
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[part]), part
    uid = int(load_image().one("USER").split(":")[0])
    assert spec["template"]["spec"]["securityContext"]["runAsUser"] == uid
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_k8s_pod_leaves_the_endpoints_before_sigterm_within_the_grace_period() -> None:
    """Regression: without preStop the node closed its listener on SIGTERM while the
    Services still routed to the pod: connection refused in every rolling step."""
    spec = k8s_one(load_k8s(), "StatefulSet")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command  # the image has it: python:*-slim is Debian
    assert load_image().final[0].args.startswith("python:"), "base image without sleep?"
    assert "-slim" in load_image().final[0].args
    pause = float(command[1])
    assert 1 <= pause <= 15, pause
    grace = spec["terminationGracePeriodSeconds"]
    for node in k8s_nodes():
        s = load_settings(argv=[], environ=node.env)
        # the grace period counts from the start of preStop
        assert grace > pause + longest_shutdown(s), node.where
    text = README.read_text()
    assert "preStop" in text
    assert f"sleep {command[1]}" in text


def test_readme_says_how_long_a_restarted_static_member_answers_503() -> None:
    """Regression: the rolling-update paragraph said reads wait "up to
    KSTATE_CATCHUP_TIMEOUT", but the pods are static members (KSTATE_INSTANCE_ID): a
    restarted one claims its partitions only a session timeout after it joins."""
    assert all(load_settings(argv=[], environ=n.env).instance_id for n in k8s_nodes())
    text = " ".join(README.read_text().split())
    rolling = text[text.index("A rolling update replaces one pod"):]
    rolling = rolling[:rolling.index("never a spurious 404")]
    assert "KSTATE_SESSION_TIMEOUT_MS" in rolling
    assert "KSTATE_INSTANCE_ID" in rolling
    assert "catching_up" in rolling


def test_tls_steps_say_how_to_change_every_health_check() -> None:
    """The probes and healthchecks speak plain HTTP; with KSTATE_TLS_CERTFILE the port
    speaks HTTPS only: SECURITY.md's TLS steps, and a comment at each, say what to change."""
    sts = (K8S / "statefulset.yaml").read_text()
    container = k8s_one(load_k8s(), "StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    probes = [k for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in container]
    assert probes
    for kind in probes:
        assert "scheme" not in container[kind]["httpGet"], kind  # shipped without TLS
        block = sts.split(f"{kind}:", 1)[1].split("Probe:", 1)[0]
        assert "# scheme: HTTPS" in block, kind
    for path in (DOCKERFILE, COMPOSE):
        lines = path.read_text().splitlines()
        at = next(i for i, line in enumerate(lines) if "urlopen(" in line)  # kstate's check
        comment = " ".join(lines[at - 4:at])
        assert "https://" in comment, path.name
        assert "SECURITY.md" in comment, path.name
    tls = SECURITY.read_text().split("### HTTPS", 1)[1].split("\n### ", 1)[0]
    for needle in ("scheme: HTTPS", "startupProbe", "readinessProbe", "livenessProbe",
                   "HEALTHCHECK", "healthcheck", "https://127.0.0.1"):
        assert needle in tls, needle


def test_deploy_readme_explains_every_setting_the_files_use() -> None:
    text = README.read_text()
    used = set()
    for path in [DOCKERFILE, COMPOSE, *K8S.glob("*.yaml")]:
        used |= set(ENV_REF.findall(path.read_text()))
    missing = sorted(name for name in used if name not in text)
    assert not missing, f"deploy/README.md does not mention {missing}"


def test_security_lagging_subscriber_numbers_are_the_codes() -> None:
    """Regression: the row said "no room for 0.5 s" after LAG_GRACE became 2.0."""
    from actors.feed import LAG_GRACE
    from kstate.node import FEED_BUFFER

    row = next(line for line in SECURITY.read_text().splitlines() if "`LAG_GRACE`" in line)
    queue = re.search(r"its queue \((\d+) changes\)", row)
    grace = re.search(r"no room for ([\d.]+) s", row)
    assert queue is not None, row
    assert grace is not None, row
    assert int(queue.group(1)) == FEED_BUFFER, row
    assert float(grace.group(1)) == LAG_GRACE, row
