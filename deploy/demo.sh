#!/usr/bin/env bash
# The kstate demo: Apache Kafka (deploy/kafka/kafka.sh) and three kstate nodes on
# 127.0.0.1:8080-8082, a few example users, and the curl lines to try.
# Ctrl-C (SIGINT) or SIGTERM stops the nodes (SIGTERM: they leave the group) and then
# Kafka. Run it as `just demo` (which runs `just setup` first) or deploy/demo.sh.
#
# Environment:
#   DEMO_PORT          port of the first node (default 8080; the others follow)
#   KAFKA_PORT         Kafka's port (default 9092; 0 = any free port)
#   DEMO_KAFKA_NAME    name of the Kafka instance (default demo: .cache/kafka/run/demo)
#   DEMO_LOGS          log folder (default <repo>/.cache/demo)
#   DEMO_WAIT          seconds to wait for the cluster to become stable (default 120)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=${KSTATE_VENV:-.venv}  # (just passes its venv)
case $venv in /*) ;; *) venv=$repo/$venv ;; esac
py=$venv/bin/python
kstate=$venv/bin/kstate
first=${DEMO_PORT:-8080}
kafka_name=${DEMO_KAFKA_NAME:-demo}
logs=${DEMO_LOGS:-$repo/.cache/demo}
wait_s=${DEMO_WAIT:-120}
ports=("$first" "$((first + 1))" "$((first + 2))")

die() { echo "demo: $*" >&2; exit 1; }
say() { echo "demo: $*" >&2; }

[ -x "$kstate" ] || die "no $kstate: run \`just setup\` first (or use \`just demo\`)"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "${ports[@]}"; do
    port_open "$p" && die "port $p is taken (another demo?); set DEMO_PORT to move the nodes"
done
mkdir -p "$logs"

pids=()
kafka_started=""
stopping=""
cleanup() {
    [ -n "$stopping" ] && return
    stopping=1
    trap '' INT TERM
    say "stopping the nodes (SIGTERM: they leave the group) ..."
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "node pid $pid did not stop in 15 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$kafka_started" ]; then
        say "stopping Kafka ($kafka_name) ..."
        deploy/kafka/kafka.sh down "$kafka_name" || true
    fi
    say "stopped; logs are in $logs"
}
trap cleanup EXIT
trap 'exit 0' INT  # a Ctrl-C is how this demo is meant to end: a clean stop
trap 'exit 0' TERM

say "starting Kafka (first run fetches it from Maven Central) ..."
kafka_started=1
# setsid: a Ctrl-C in the terminal reaches this script only; it stops everything in
# order (nodes first, so they can leave the group, then Kafka).
bootstrap=$(KAFKA_PORT=${KAFKA_PORT:-9092} setsid deploy/kafka/kafka.sh up "$kafka_name" \
    | tail -n 1)
[ -n "$bootstrap" ] || die "Kafka did not start"
say "Kafka at $bootstrap (logs: .cache/kafka/run/$kafka_name/logs)"

for i in 0 1 2; do
    port=${ports[$i]}
    log=$logs/node-$port.log
    : >"$log"
    KSTATE_BOOTSTRAP=$bootstrap KSTATE_LISTEN=127.0.0.1:$port \
        KSTATE_INSTANCE_ID=demo-node-$i KSTATE_SESSION_TIMEOUT_MS=6000 KSTATE_STANDBY=true \
        setsid "$kstate" node >>"$log" 2>&1 </dev/null &
    pids+=($!)
done
say "three nodes starting on 127.0.0.1:${ports[0]}-${ports[2]} (pids ${pids[*]})"

# Wait until every node is ready and all report the same routing table; then load a
# few users through different nodes (seed and REST APIs).
"$py" - "$wait_s" "${ports[@]}" <<'EOF' || die "the cluster did not become stable (logs: $logs)"
import sys, time
import httpx

wait_s, ports = float(sys.argv[1]), sys.argv[2:]
bases = [f"http://127.0.0.1:{p}" for p in ports]
deadline = time.monotonic() + wait_s
with httpx.Client(timeout=5, trust_env=False) as c:
    while True:
        try:
            ready = all(c.get(f"{b}/readyz").status_code == 200 for b in bases)
            tables = [c.get(f"{b}/groupinfo").json() for b in bases]
            owners = set(tables[0].values())
            if ready and all(t == tables[0] for t in tables) and len(owners) == 3:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.3)
    users = [("Bob Davis", "bob_smith@example.com"), ("Alice Martin", "alice@example.com"),
             ("Carol Nguyen", "carol@example.org"), ("Dan Okafor", "dan@example.net"),
             ("Eve Schmidt", "eve@example.com"), ("Frank Ito", "frank@example.org")]
    for i, (name, email) in enumerate(users):
        base = bases[i % 3]
        body = {"name": name, "email": email}
        for _ in range(50):
            if i % 2:
                r = c.put(f"{base}/users/{email}", json=body)
            else:
                r = c.put(f"{base}/user", json=body)
            if r.status_code != 503:
                break
            time.sleep(0.2)
        r.raise_for_status()
    table = tables[0]
    print("demo: cluster stable; partition owners:", file=sys.stderr)
    for base in bases:
        mine = sorted(int(k.rsplit("-", 1)[1]) for k, v in table.items()
                      if f"http://{v}" == base)
        print(f"demo:   {base}  partitions {mine}", file=sys.stderr)
EOF

n0=127.0.0.1:${ports[0]}
n1=127.0.0.1:${ports[1]}
n2=127.0.0.1:${ports[2]}
cat <<EOF

kstate demo is running: Kafka at $bootstrap, nodes at $n0, $n1, $n2.
Dashboard (members, partition owners, catch-up, counters, live changes): http://$n0/
Six example users are loaded (bob_smith@example.com, alice@example.com, ...).
Any node answers any key; it forwards to the owner of the key's partition.

Seed API:
  curl -s "http://$n0/user?email=bob_smith@example.com"
  curl -s -X PUT http://$n1/user -d '{"name":"Bob Davis","email":"bob_smith@example.com"}'
  curl -s -X DELETE "http://$n2/user?email=bob_smith@example.com"

REST API (ETag = "<partition>-<offset>"; If-Match on PUT/DELETE):
  curl -si http://$n1/users/alice@example.com
  curl -si -X PUT http://$n2/users/zoe@example.com -H 'Content-Type: application/json' \\
       -d '{"name":"Zoe Park","email":"zoe@example.com"}'
  curl -si -X DELETE http://$n0/users/zoe@example.com

Cluster:
  curl -s http://$n0/groupinfo        # partition -> owner, the same on every node
  curl -s http://$n1/readyz           # per-partition position, target, lag, catch-up
  curl -s http://$n2/metrics          # Prometheus
  open    http://$n0/                 # dashboard

Try a failover: kill -9 ${pids[2]}   (the node on ${ports[2]}), then watch
  curl -s http://$n0/groupinfo
its partitions move to the others after the 6 s session timeout. Meanwhile its keys
keep answering through the others: the demo runs with standby copies (KSTATE_STANDBY).

Logs: $logs/node-${ports[0]}.log (and -${ports[1]}, -${ports[2]});
      Kafka: .cache/kafka/run/$kafka_name/logs
Ctrl-C stops the nodes and Kafka.
EOF

# Run until Ctrl-C / SIGTERM; say so when a node exits by itself (or is killed).
gone=("" "" "")
while true; do
    for i in 0 1 2; do
        if [ -z "${gone[$i]}" ] && ! kill -0 "${pids[$i]}" 2>/dev/null; then
            gone[i]=1
            say "node on port ${ports[$i]} exited; see $logs/node-${ports[$i]}.log"
            say "(the others keep running and take over its partitions; Ctrl-C stops all)"
        fi
    done
    sleep 1 &
    wait $! || true
done
