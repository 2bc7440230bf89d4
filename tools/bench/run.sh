#!/usr/bin/env bash
# `just bench [ARGS]`: kstate vs a faust-streaming peer on one broker this script starts
# (and stops, whatever happens). ARGS go to tools/bench/bench.py: --quick, --users N, --only ...
#
# Installs what the benchmark needs from the project's own files:
#   - Debian's wrk (the load generator), with apt-get, when it is missing;
#   - faust-streaming into its own venv .cache/bench-venv (it pins its own aiokafka and
#     must not touch .venv), from tools/bench/peers/requirements.txt.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)  # tools/bench/ -> the repository
cd "$repo"
py=${KSTATE_VENV:-.venv}/bin/python
peer=.cache/bench-venv
broker=${BENCH_KAFKA_NAME:-bench-$$}  # unique: the machine may be shared

for arg in "$@"; do
    case $arg in -h|--help) exec "$py" -m tools.bench.bench --bootstrap - --help ;; esac
done

if ! command -v wrk >/dev/null; then
    echo "bench: installing Debian's wrk" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && apt-get install -y -qq wrk >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null
    fi
fi

if [ ! -f "$peer/.installed" ] || [ tools/bench/peers/requirements.txt -nt "$peer/.installed" ]; then
    echo "bench: installing the faust-streaming peer into $peer" >&2
    python3 -m venv "$peer"
    "$peer/bin/pip" install -q --upgrade pip
    "$peer/bin/pip" install -q -r tools/bench/peers/requirements.txt
    touch "$peer/.installed"
fi

bench_pid=""
rc=1
cleanup() {
    if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
        kill -TERM "$bench_pid" 2>/dev/null || true   # bench.py stops its own nodes
        wait "$bench_pid" 2>/dev/null || true
    fi
    deploy/kafka/kafka.sh down "$broker" >/dev/null 2>&1 || true
    local run_dir="${KAFKA_CACHE:-$repo/.cache/kafka}/run/$broker"
    if [ "$rc" -eq 0 ]; then
        rm -rf "$run_dir"  # a broker per run: nothing of it is worth keeping after a good run
    else
        rm -rf "$run_dir/data"  # keep its logs, not 1M users
        echo "bench: the broker's logs are in $run_dir/logs" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bootstrap=$(KAFKA_PORT=0 deploy/kafka/kafka.sh up "$broker")
echo "bench: broker $broker on $bootstrap" >&2
"$py" -m tools.bench.bench --bootstrap "$bootstrap" "$@" &
bench_pid=$!
rc=0
wait "$bench_pid" || rc=$?
bench_pid=""
exit "$rc"
