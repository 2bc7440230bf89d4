# kstate tasks. `just --list` shows them all.
set shell := ["bash", "-euo", "pipefail", "-c"]

# The interpreter the venv is made with, and the venv: the suite on another Python is
# KSTATE_PYTHON=python3.13 KSTATE_VENV=.venv-3.13 just test
python := env("KSTATE_PYTHON", "python3")
venv := env("KSTATE_VENV", ".venv")
py := venv / "bin/python"
export KSTATE_VENV := venv

# Run the whole test suite against a Kafka broker this recipe starts (and stops).
default: test

# Create the venv (.venv) and install kstate (editable) with its dev dependencies.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{py}} ]; then {{python}} -m venv {{venv}}; fi
    if [ ! -f {{venv}}/.installed ] || [ pyproject.toml -nt {{venv}}/.installed ]; then
        {{py}} -m pip install -q --upgrade pip
        {{py}} -m pip install -q -e '.[dev]'
        touch {{venv}}/.installed
    fi

# Fetch Apache Kafka's jars from Maven Central into .cache/kafka (once).
kafka-fetch:
    deploy/kafka/kafka.sh fetch

# One KRaft broker on 127.0.0.1:${KAFKA_PORT:-9092}.
kafka-up:
    deploy/kafka/kafka.sh up

kafka-down:
    deploy/kafka/kafka.sh down

# Three KRaft brokers (each also a controller) on free loopback ports.
kafka-cluster-up:
    deploy/kafka/kafka.sh cluster-up

kafka-cluster-down:
    deploy/kafka/kafka.sh cluster-down

# The whole suite: layer contracts, unit, integration (real broker, real node
# processes), short chaos; then the unit tier on the other Pythons this machine has
# (tests/other_pythons.sh). Extra ARGS go to pytest (and skip the other Pythons).
test *ARGS: setup
    {{venv}}/bin/lint-imports
    tests/run.sh {{ARGS}}
    {{ if ARGS == "" { "tests/other_pythons.sh" } else { "" } }}

# The fast tier for iterating (unit tests and the quickest integration tests, ~2 min).
test-fast *ARGS: setup
    {{venv}}/bin/lint-imports
    tests/run.sh -m fast {{ARGS}}

# kstate vs a faust-streaming peer on a broker it starts: just bench [--quick] [--users N]
bench *ARGS: setup
    tools/bench/run.sh {{ARGS}}

# ruff + mypy --strict + the layer contracts (import-linter).
lint: setup
    {{venv}}/bin/ruff check kstate actors web tests tools
    {{venv}}/bin/mypy
    {{venv}}/bin/lint-imports

# Kafka + three nodes on 127.0.0.1:8080-8082 with a few users; Ctrl-C stops all.
demo: setup
    deploy/demo.sh

# A node against an existing Kafka: just node --bootstrap host:9092 --listen 127.0.0.1:8080
node *ARGS: setup
    {{venv}}/bin/kstate node {{ARGS}}

# The linearizability checker (tools/linearizability, Porcupine; needs Go) into
# .cache/bin/, rebuilt only when its sources changed.
build-checker: setup
    {{py}} -m tools.chaos.linearizability build

# Chaos: Kafka + nodes, kill -9/SIGTERM/restart/add/remove (and broker kills with
# --mode cluster, pauses with --pauses, network cuts with --netcut) under a judged
# read/write/delete workload; the own checker and Porcupine judge it; prints a table,
# writes chaos-results/*.json and the history, exits 1 on any violation.
# just chaos --duration 600 --seed 3
chaos *ARGS: setup build-checker
    {{py}} -m tools.chaos {{ARGS}}
