"""The deploy files checked against the published schemas, offline.

tests/unit/test_deploy_files.py checks the deploy files' *wiring* against the code; this
module checks their *shape* against the schemas of the tools that read them, so a
misspelled field or a wrong type fails here instead of at ``kubectl apply`` or
``docker compose up`` on somebody's machine.  Both schemas come with dev dependencies,
so nothing is downloaded at test time and nothing is copied into the repository:

- every document of every deploy/k8s/*.yaml against the Kubernetes JSON schemas that
  ``kubernetes-validate`` ships, for :data:`K8S_VERSION`, in strict mode (an unknown
  field is an error, as with ``kubectl apply --validate=strict``; without strict mode a
  misspelled field is silently accepted, see the last test);
- deploy/docker-compose.yml against the Compose Specification's JSON schema, in the copy
  that ``check-jsonschema`` vendors (its ``--builtin-schema vendor.compose-spec``),
  validated with ``jsonschema``.

The negative tests break a copy of each real file in one known way and expect the
validation to fail at that spot: a validator that accepts everything cannot pass them.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "docker-compose.yml"
K8S = REPO / "deploy" / "k8s"

# The newest Kubernetes release whose schemas kubernetes-validate (>=1.37) ships.  The
# manifests also pass every older schema it ships (1.25 on): they use no API that is new.
K8S_VERSION = "1.37.0"


# ---------------------------------------------------------------- kubernetes ----

def k8s_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path`` (a ``---`` at the end adds an empty one)."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs, f"{path.name}: no document"
    assert all(isinstance(doc, dict) for doc in docs), f"{path.name}: a document is no map"
    return docs


def k8s_errors(path: Path, *, strict: bool = True) -> list[str]:
    """One line per document of ``path`` that does not validate for :data:`K8S_VERSION`.

    A kind or apiVersion without a schema (e.g. one removed from Kubernetes) is an error
    here, not the warning that the kubernetes-validate command line makes of it."""
    errors = []
    for index, doc in enumerate(k8s_documents(path)):
        where = f"{path.name}[{index}] {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=strict)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where}: {exc.json_path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{where}: {exc.message}")
    return errors


# ---------------------------------------------------------------- compose ----

@functools.cache
def compose_validator() -> jsonschema.protocols.Validator:
    """A validator for the Compose Specification schema, in the JSON Schema draft it
    declares (2020-12: ``unevaluatedProperties`` is what rejects unknown service keys)."""
    # The loader behind `check-jsonschema --builtin-schema vendor.compose-spec`: the
    # schema file check-jsonschema keeps in step with the compose-spec project.
    schema = get_builtin_schema("vendor.compose-spec")
    assert schema.get("title") == "Compose Specification", "not the compose-spec schema"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def compose_errors(path: Path) -> list[str]:
    """One line per schema violation in the compose file at ``path``.

    YAML anchors and ``<<`` merge keys are resolved by the loader, as Compose does, so the
    services are validated as Compose sees them, not as the ``x-`` templates look."""
    doc = yaml.safe_load(path.read_text())
    errors = list(compose_validator().iter_errors(doc))
    specific = [tuple(e.absolute_path) for e in errors if e.validator != "unevaluatedProperties"]
    lines = []
    for error in errors:
        at = tuple(error.absolute_path)
        if error.validator == "unevaluatedProperties" and any(
                below[:len(at)] == at for below in specific):
            # 2020-12 semantics: one bad value fails its allOf branch, and then none of
            # that branch's keys count as evaluated, so valid siblings are reported as
            # unexpected too.  The specific error below says what is wrong; a real stray
            # key here still shows once that one is fixed.
            continue
        line = f"{path.name}: {error.json_path}: {error.message}"
        if error.context:
            # A oneOf failure says only "not valid under any of the given schemas": name
            # the deepest error among its branches, the one that says what is wrong.
            deepest = max(error.context, key=lambda e: len(e.absolute_path))
            line += f" (deepest: {deepest.json_path}: {deepest.message})"
        lines.append(line)
    return sorted(lines)


# ---------------------------------------------------------------- helpers ----

def broken_copy(src: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of ``src`` in ``tmp_path`` with the one occurrence of ``old`` made ``new``.

    Exactly one: when the real file changes so that ``old`` is gone, the negative test
    must fail loudly rather than validate an unbroken copy."""
    text = src.read_text()
    assert text.count(old) == 1, f"{src.name}: {old!r} occurs {text.count(old)} times, not 1"
    copy = tmp_path / src.name
    copy.write_text(text.replace(old, new))
    return copy


# ================================================================ tests ====

def test_k8s_manifests_match_the_kubernetes_schema() -> None:
    paths = sorted(K8S.glob("*.yaml"))
    assert paths, "deploy/k8s has no manifest"
    errors = [line for path in paths for line in k8s_errors(path)]
    assert not errors, "\n".join(errors)


def test_compose_file_matches_the_compose_spec() -> None:
    errors = compose_errors(COMPOSE)
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        pytest.param("statefulset.yaml", "imagePullPolicy:", "imagePulPolicy:",
                     "'imagePulPolicy' was unexpected", id="misspelled-field"),
        pytest.param("statefulset.yaml", "replicas: 3", 'replicas: "3"',
                     "$.spec.replicas: '3' is not of type 'integer'", id="wrong-type"),
        pytest.param("statefulset.yaml", "failureThreshold: 45", "failureThreshold: 4.5",
                     "$.spec.template.spec.containers[0].startupProbe.failureThreshold",
                     id="not-an-integer"),
        pytest.param("configmap.yaml", 'KSTATE_PARTITIONS: "10"', "KSTATE_PARTITIONS: 10",
                     "$.data.KSTATE_PARTITIONS: 10 is not of type 'string'",
                     id="configmap-value-not-a-string"),
        pytest.param("services.yaml", "publishNotReadyAddresses: true",
                     "publishNotReadyAddresses: always", "is not of type 'boolean'",
                     id="service-wrong-type"),
        pytest.param("pdb.yaml", "apiVersion: policy/v1", "apiVersion: policy/v1beta1",
                     "Couldn't find schema for kind PodDisruptionBudget",
                     id="removed-api-version"),
    ],
)
def test_broken_k8s_manifest_fails(tmp_path: Path, name: str, old: str, new: str,
                                   expected: str) -> None:
    errors = k8s_errors(broken_copy(K8S / name, tmp_path, old, new))
    assert any(expected in line for line in errors), errors


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param("stop_grace_period:", "stop_grace_periode:",
                     "'stop_grace_periode' was unexpected", id="misspelled-service-key"),
        pytest.param("\nservices:\n", "\nservice:\n",
                     "'service' does not match any of the regexes: '^x-'",
                     id="misspelled-top-level-key"),
        pytest.param('ports: ["8081:8080"]', 'ports: "8081:8080"',
                     "$.services['kstate-2'].ports: '8081:8080' is not of type 'array'",
                     id="wrong-type"),
        pytest.param("kafka-2: {condition: service_healthy}",
                     "kafka-2: {condition: service_ready}",
                     "'service_ready' is not one of", id="unknown-enum-value"),
        pytest.param("retries: 12", "retries: [12]", "[12] is not of type 'number', 'string'",
                     id="healthcheck-wrong-type"),
    ],
)
def test_broken_compose_file_fails(tmp_path: Path, old: str, new: str, expected: str) -> None:
    errors = compose_errors(broken_copy(COMPOSE, tmp_path, old, new))
    assert any(expected in line for line in errors), errors


def test_only_strict_mode_catches_a_misspelled_k8s_field(tmp_path: Path) -> None:
    """Why strict: the plain Kubernetes schemas allow any extra field, so a typo in an
    optional field (here the probe a rebalance must not trip) would pass unnoticed."""
    broken = broken_copy(K8S / "statefulset.yaml", tmp_path, "livenessProbe:", "livenesProbe:")
    assert k8s_errors(broken, strict=False) == []
    assert any("'livenesProbe' was unexpected" in line for line in k8s_errors(broken))
