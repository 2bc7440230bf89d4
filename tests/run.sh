#!/usr/bin/env bash
# Run the whole suite against a broker started here (stopped on exit, pass or fail).
# KSTATE_TEST_BOOTSTRAP=host:port uses an existing Kafka instead.
set -euo pipefail
cd "$(dirname "$0")/.."
name="test-$$"
if [ -z "${KSTATE_TEST_BOOTSTRAP:-}" ]; then
    trap 'deploy/kafka/kafka.sh down "$name" || true; rm -rf ".cache/kafka/run/$name"' EXIT
    start=$SECONDS
    KSTATE_TEST_BOOTSTRAP=$(KAFKA_PORT=0 deploy/kafka/kafka.sh up "$name")
    export KSTATE_TEST_BOOTSTRAP
    echo "tests/run.sh: Kafka $KSTATE_TEST_BOOTSTRAP ready in $((SECONDS - start))s"
fi
deploy/install-browser.sh  # Debian chromium + chromedriver for the dashboard browser test
# Independent tests run side by side against the one broker (unique topics and groups;
# most of a test's time is waiting for nodes and the group). Tests of one xdist_group
# run one after the other on one worker.
workers=${KSTATE_TEST_WORKERS:-4}
"${KSTATE_VENV:-.venv}/bin/python" -m pytest -n "$workers" --dist loadgroup --durations=30 "$@"
