#!/usr/bin/env bash
# Apache Kafka for development, tests and the demo: fetched from Maven Central by
# deploy/kafka/pom.xml, run with the machine's Java in KRaft mode on loopback.
#
#   kafka.sh fetch                  copy the broker jars into $KAFKA_CACHE/libs (once)
#   kafka.sh up [NAME]              one combined broker+controller; prints bootstrap
#   kafka.sh down [NAME]            stop it (SIGTERM, then SIGKILL after 20 s); any mode
#   kafka.sh stop NAME              stop a single broker but keep its data and ports
#   kafka.sh start NAME             start a stopped `up`/`up-secure` broker again (same
#                                   data, ports; prints what its `up` printed)
#   kafka.sh up-sasl NAME USER PASS one broker whose clients must log in: SASL_PLAINTEXT,
#                                   mechanisms PLAIN and SCRAM-SHA-256; prints bootstrap
#   kafka.sh up-secure NAME CERTDIR one broker with four client listeners on free ports;
#                                   prints them on one line (also in run/NAME/listeners):
#       PLAINTEXT=127.0.0.1:P1 SSL=127.0.0.1:P2 SASL_SSL=127.0.0.1:P3 SASL_PLAINTEXT=127.0.0.1:P4
#                                   SSL: server cert from CERTDIR, client auth "requested"
#                                   (a client cert, if sent, must chain to CERTDIR/ca.pem);
#                                   SASL_SSL, SASL_PLAINTEXT: PLAIN, SCRAM-SHA-256 and
#                                   SCRAM-SHA-512, one user $KAFKA_TEST_USER with password
#                                   $KAFKA_TEST_PASSWORD for all three. CERTDIR is made by
#                                   deploy/tls/make-certs.sh when incomplete.
#                                   With KAFKA_ACLS=1 the broker enforces ACLs
#                                   (StandardAuthorizer, nothing allowed without one):
#                                   User:ANONYMOUS, what the PLAINTEXT listener (the
#                                   broker's own, the controller's and an admin's)
#                                   authenticates as, is the only super user; the SASL
#                                   user (and SSL clients) may do only what ACLs grant.
#   kafka.sh cluster-up [NAME]      three brokers, each also a controller voter
#   kafka.sh cluster-down [NAME]    stop all three
#   kafka.sh broker-stop NAME I     kill -9 broker I (1..3) of a cluster  (chaos)
#   kafka.sh broker-start NAME I    start broker I of a cluster again     (chaos)
#
# Environment:
#   KAFKA_CACHE  cache folder (default: <repo>/.cache/kafka); jars in libs/, one
#                folder per running instance in run/NAME/ (data, logs, pid, ports)
#   KAFKA_PORT   bootstrap port of `up` (default 9092; 0 = pick a free port)
#   KAFKA_HEAP   -Xmx of each broker (default 512m single, 384m per cluster broker)
#   KAFKA_READY_TIMEOUT  seconds to wait for a broker to answer metadata (default 60)
#   KAFKA_TEST_USER, KAFKA_TEST_PASSWORD  the SASL user of `up-secure` (default
#                kstate-test / kstate-test-password; letters, digits and ._@+- only)
#   KAFKA_ACLS=1  (`up-secure`) enforce ACLs: see up-secure above
#   KAFKA_PROXY_SLOTS=N  (`up`, `cluster-up`) N more PLAINTEXT listeners per broker,
#                SLOT1..SLOTN, each bound to a free internal port and advertised at
#                another free port where a proxy (python -m tools.netcut) is to listen
#                and forward to the internal one. Written to run/NAME/slots (cluster:
#                also run/NAME/I/slots) as lines `slot broker_id advertised internal`.
#                A client bootstrapped through slot k's proxy is told slot-k proxy
#                addresses for every broker (leaders, group and transaction
#                coordinators), so cutting slot k's proxies cuts that client only.
#                Brokers and controllers never talk over slot listeners. `up` still
#                prints the normal bootstrap as its last line.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KAFKA_CACHE:-$repo/.cache/kafka}
libs=$cache/libs
ready_timeout=${KAFKA_READY_TIMEOUT:-60}

die() { echo "kafka.sh: $*" >&2; exit 1; }

# libs/.complete holds the sha256 of the pom.xml the jars came from: a checkout's file
# times say nothing (a new git worktree's pom.xml is newer than any cache, and a shared
# KAFKA_CACHE was wiped and fetched again under running brokers).
fetch() {
    local want have=""
    want=$(sha256sum "$here/pom.xml" | cut -d' ' -f1)
    [ -f "$libs/.complete" ] && have=$(cat "$libs/.complete")
    [ "$have" = "$want" ] && return 0
    if [ -f "$libs/.complete" ] && [ -z "$have" ] && [ "$libs/.complete" -nt "$here/pom.xml" ]; then
        echo "$want" >"$libs/.complete"  # a cache from before the hash: trust it once
        return 0
    fi
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch Kafka from Maven Central"
    command -v java >/dev/null || die "Java >= 17 is needed to run Kafka"
    echo "kafka.sh: fetching Apache Kafka jars into $libs" >&2
    rm -rf "$libs"
    mkdir -p "$libs"
    mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$libs" -DincludeScope=runtime >&2 \
        || die "mvn could not fetch Kafka (see output above)"
    echo "$want" >"$libs/.complete"
}

free_port() { free_ports 1; }

# free_ports N: N distinct free loopback ports, one per line. Taken below the kernel's
# ephemeral range: a port the kernel hands out may be taken by some outgoing connection
# between this check and the broker's bind (seen with tests running side by side).
free_ports() {
    python3 -c 'import random, socket, sys
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
socks, want = [], int(sys.argv[1])
for port in random.sample(range(10000, max(low, 10001 + want)), k=min(4000, low - 10000)):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    socks.append(s)
    if len(socks) == want:
        break
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# proxy_slots DIR NODE_ID: with KAFKA_PROXY_SLOTS=N (N > 0), pick N internal and N
# advertised ports for listeners SLOT1..SLOTN, append `slot node_id advertised internal`
# lines to DIR/slots, and print write_props' EXTRA for them. A proxy (tools/netcut.py)
# listens on the advertised port and forwards to the internal one: a client that
# bootstraps through slot k's proxy is told slot-k addresses for every broker.
proxy_slots() {
    local dir=$1 id=$2 n=${KAFKA_PROXY_SLOTS:-0} k ports spec=""
    [[ "$n" =~ ^[0-9]+$ ]] || die "KAFKA_PROXY_SLOTS must be a number, got $n"
    [ "$n" -gt 0 ] || return 0
    mapfile -t ports < <(free_ports $((2 * n)))
    for k in $(seq 1 "$n"); do
        local adv=${ports[$((2 * k - 2))]} int=${ports[$((2 * k - 1))]}
        echo "$k $id $adv $int" >>"$dir/slots"
        spec+="${spec:+ }SLOT$k:PLAINTEXT:$int:$adv"
    done
    echo "$spec"
}

# Does something answer on 127.0.0.1:$1?  (a listening socket is not yet a ready
# broker; ready() below asks for metadata)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

java_cmd() {  # java_cmd DIR MAINCLASS ARGS...: run (exec, if JAVA_EXEC=exec) java on Kafka's classpath
    local dir=$1; shift
    ${JAVA_EXEC:-} java "-Xms64m" "-Xmx$KAFKA_HEAP_EFFECTIVE" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        "-Dlog4j2.configurationFile=$dir/log4j2.properties" \
        "-Dkafka.logs.dir=$dir/logs" \
        -cp "$libs/*" "$@"
}

write_log4j() {  # write_log4j DIR
    cat >"$1/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $1/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
EOF
}

# write_props DIR NODE_ID PORT CONTROLLER_PORT VOTERS REPLICATION [EXTRA]
# EXTRA: more client listeners, space-separated NAME:PROTOCOL:BIND_PORT:ADVERTISED_PORT.
# Brokers talk to each other on PLAINTEXT and controllers on CONTROLLER, never on these.
write_props() {
    local dir=$1 id=$2 port=$3 cport=$4 voters=$5 rf=$6 extra=${7:-}
    local min_isr=1 spec lname proto bind adv
    [ "$rf" -ge 3 ] && min_isr=2
    local listeners="PLAINTEXT://127.0.0.1:$port" advertised="PLAINTEXT://127.0.0.1:$port"
    local map="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    for spec in $extra; do
        IFS=: read -r lname proto bind adv <<<"$spec"
        listeners+=",$lname://127.0.0.1:$bind"
        advertised+=",$lname://127.0.0.1:$adv"
        map+=",$lname:$proto"
    done
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=$listeners,CONTROLLER://127.0.0.1:$cport
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$map
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
# Tests and the demo want a new group to form at once, not after 3 s.
group.initial.rebalance.delay.ms=0
# Compaction runs often enough to be seen in a demo; it never changes what a reader sees.
log.cleaner.backoff.ms=5000
log.segment.bytes=67108864
auto.create.topics.enable=false
EOF
    echo "$port" >"$dir/port"
    echo "$cport" >"$dir/controller_port"
}

format_storage() {  # format_storage DIR CLUSTER_ID
    local dir=$1 cid=$2
    [ -f "$dir/data/meta.properties" ] && return 0
    mkdir -p "$dir/data" "$dir/logs"
    java_cmd "$dir" kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" \
        >"$dir/logs/format.log" 2>&1 || { cat "$dir/logs/format.log" >&2; die "storage format failed in $dir"; }
}

start_broker() {  # start_broker DIR
    local dir=$1
    mkdir -p "$dir/logs"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        return 0
    fi
    # wait_ready looks for "started" in server.log: never let a previous run answer.
    [ -f "$dir/logs/server.log" ] && mv -f "$dir/logs/server.log" "$dir/logs/server.log.prev"
    (JAVA_EXEC=exec java_cmd "$dir" kafka.Kafka "$dir/server.properties" \
        >"$dir/logs/stdout.log" 2>&1 </dev/null) &
    echo $! >"$dir/pid"
}

# wait_ready DIR...: each broker's port open and the broker registered (its log says so)
wait_ready() {
    local deadline=$((SECONDS + ready_timeout)) dir
    for dir in "$@"; do
        local port
        port=$(cat "$dir/port")
        until port_open "$port" && grep -q "Kafka Server started\|\[KafkaRaftServer nodeId=[0-9]*\] Kafka Server started" "$dir/logs/server.log" 2>/dev/null; do
            if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
                tail -n 40 "$dir/logs/server.log" "$dir/logs/stdout.log" >&2 2>/dev/null || true
                die "broker in $dir exited during start (logs above)"
            fi
            [ $SECONDS -lt $deadline ] || die "broker in $dir not ready after ${ready_timeout}s (see $dir/logs)"
            sleep 0.2
        done
    done
}

stop_dir() {  # stop_dir DIR [SIGNAL]
    local dir=$1 sig=${2:-TERM} pid
    [ -f "$dir/pid" ] || return 0
    pid=$(cat "$dir/pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$dir/pid"
}

# A random cluster id as Kafka makes them (Uuid.randomUuid): never one that starts with
# "-", which kafka-storage would take for an option (1 start in 64 failed that way).
cluster_id() {
    python3 -c 'import base64, uuid
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cid.startswith("-"):
        break
print(cid)'
}

cmd_up() {
    local name=${1:-single} dir port cport
    dir=$cache/run/$name
    fetch
    KAFKA_HEAP_EFFECTIVE=${KAFKA_HEAP:-512m}
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "127.0.0.1:$(cat "$dir/port")"
        return 0
    fi
    # A fresh data dir every start: tests and the demo want a clean broker.
    rm -rf "$dir"
    mkdir -p "$dir/logs"
    port=${KAFKA_PORT:-9092}
    [ "$port" = 0 ] && port=$(free_port)
    port_open "$port" && die "port $port is taken (set KAFKA_PORT, or 0 for a free one)"
    cport=$(free_port)
    write_log4j "$dir"
    local slots
    slots=$(proxy_slots "$dir" 1)
    write_props "$dir" 1 "$port" "$cport" "1@127.0.0.1:$cport" 1 "$slots"
    local t0=$SECONDS
    format_storage "$dir" "$(cluster_id)"
    start_broker "$dir"
    wait_ready "$dir"
    echo "kafka.sh: broker ready on 127.0.0.1:$port in $((SECONDS - t0))s (logs: $dir/logs)" >&2
    echo "127.0.0.1:$port"
}

cmd_up_sasl() {  # up-sasl NAME USER PASS: like `up`, but clients must log in as USER
    local name=${1:?usage: kafka.sh up-sasl NAME USER PASS} user=${2:?USER} pass=${3:?PASS}
    local dir port cport iport
    dir=$cache/run/$name
    fetch
    KAFKA_HEAP_EFFECTIVE=${KAFKA_HEAP:-512m}
    stop_dir "$dir"
    rm -rf "$dir"
    mkdir -p "$dir/logs"
    port=${KAFKA_PORT:-0}
    [ "$port" = 0 ] && port=$(free_port)
    port_open "$port" && die "port $port is taken (set KAFKA_PORT, or 0 for a free one)"
    cport=$(free_port)
    iport=$(free_port)
    write_log4j "$dir"
    write_props "$dir" 1 "$iport" "$cport" "1@127.0.0.1:$cport" 1
    # Later keys win in a .properties file: clients get a SASL listener, the broker
    # keeps a plaintext one for itself (inter-broker) on another loopback port.
    cat >>"$dir/server.properties" <<SASL
listeners=INTERNAL://127.0.0.1:$iport,SASL_PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=INTERNAL://127.0.0.1:$iport,SASL_PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=INTERNAL:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user="$pass";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
SASL
    echo "$port" >"$dir/port"
    local t0=$SECONDS
    java_cmd "$dir" kafka.tools.StorageTool format -t "$(cluster_id)" -c "$dir/server.properties" \
        --add-scram "SCRAM-SHA-256=[name=$user,password=$pass]" >"$dir/logs/format.log" 2>&1 \
        || { cat "$dir/logs/format.log" >&2; die "storage format failed in $dir"; }
    start_broker "$dir"
    wait_ready "$dir"
    echo "kafka.sh: SASL broker ready on 127.0.0.1:$port in $((SECONDS - t0))s (logs: $dir/logs)" >&2
    echo "127.0.0.1:$port"
}

# up-secure NAME CERTDIR: one broker with PLAINTEXT, SSL, SASL_SSL and SASL_PLAINTEXT
# listeners (free ports); prints NAME=127.0.0.1:PORT for each, on one line.
cmd_up_secure() {
    local name=${1:?usage: kafka.sh up-secure NAME CERTDIR} certs=${2:?usage: kafka.sh up-secure NAME CERTDIR}
    local user=${KAFKA_TEST_USER:-kstate-test} pass=${KAFKA_TEST_PASSWORD:-kstate-test-password}
    local word='^[A-Za-z0-9._@+-]+$' dir m lname
    # Both go verbatim into a JAAS line and a --add-scram list: keep them plain words.
    [[ "$user" =~ $word ]] || die "KAFKA_TEST_USER may hold only letters, digits and ._@+-"
    [[ "$pass" =~ $word ]] || die "KAFKA_TEST_PASSWORD may hold only letters, digits and ._@+-"
    "$repo/deploy/tls/make-certs.sh" "$certs"  # reuses CERTDIR when complete
    certs=$(cd "$certs" && pwd)
    dir=$cache/run/$name
    fetch
    KAFKA_HEAP_EFFECTIVE=${KAFKA_HEAP:-512m}
    stop_dir "$dir"
    rm -rf "$dir"
    mkdir -p "$dir/logs"
    local ports cport
    mapfile -t ports < <(free_ports 5)
    cport=${ports[4]}
    write_log4j "$dir"
    write_props "$dir" 1 "${ports[0]}" "$cport" "1@127.0.0.1:$cport" 1 \
        "SSL:SSL:${ports[1]}:${ports[1]} SASL_SSL:SASL_SSL:${ports[2]}:${ports[2]} SASL_PLAINTEXT:SASL_PLAINTEXT:${ports[3]}:${ports[3]}"
    {
        echo "# TLS (SSL and SASL_SSL): PEM keystore (key + chain) and PEM truststore"
        echo "ssl.keystore.type=PEM"
        echo "ssl.keystore.location=$certs/server-keystore.pem"
        echo "ssl.truststore.type=PEM"
        echo "ssl.truststore.location=$certs/ca.pem"
        echo "listener.name.ssl.ssl.client.auth=requested"
        for lname in sasl_ssl sasl_plaintext; do
            echo "listener.name.$lname.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
            echo "listener.name.$lname.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user=\"$pass\";"
            for m in scram-sha-256 scram-sha-512; do
                echo "listener.name.$lname.$m.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
            done
        done
        if [ "${KAFKA_ACLS:-0}" = 1 ]; then
            echo "# ACLs: the broker, the controller and an admin (all on PLAINTEXT) may"
            echo "# do anything; any other principal only what an ACL allows"
            echo "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            echo "super.users=User:ANONYMOUS"
            echo "allow.everyone.if.no.acl.found=false"
        fi
    } >>"$dir/server.properties"
    local t0=$SECONDS
    # SCRAM credentials go into the cluster metadata at format time (KRaft).
    java_cmd "$dir" kafka.tools.StorageTool format -t "$(cluster_id)" -c "$dir/server.properties" \
        --add-scram "SCRAM-SHA-256=[name=$user,password=$pass]" \
        --add-scram "SCRAM-SHA-512=[name=$user,password=$pass]" >"$dir/logs/format.log" 2>&1 \
        || { cat "$dir/logs/format.log" >&2; die "storage format failed in $dir"; }
    start_broker "$dir"
    wait_ready "$dir"
    local line="PLAINTEXT=127.0.0.1:${ports[0]} SSL=127.0.0.1:${ports[1]} SASL_SSL=127.0.0.1:${ports[2]} SASL_PLAINTEXT=127.0.0.1:${ports[3]}"
    echo "$line" >"$dir/listeners"
    echo "kafka.sh: secure broker ready in $((SECONDS - t0))s, user $user (logs: $dir/logs)" >&2
    echo "$line"
}

cmd_cluster_up() {
    local name=${1:-cluster} base i voters="" cid
    base=$cache/run/$name
    fetch
    KAFKA_HEAP_EFFECTIVE=${KAFKA_HEAP:-384m}
    rm -rf "$base"
    local ports=() cports=()
    for i in 1 2 3; do ports+=("$(free_port)"); cports+=("$(free_port)"); done
    for i in 1 2 3; do voters+="${voters:+,}$i@127.0.0.1:${cports[$((i-1))]}"; done
    cid=$(cluster_id)
    local t0=$SECONDS
    for i in 1 2 3; do
        mkdir -p "$base/$i/logs"
        write_log4j "$base/$i"
        local slots
        slots=$(proxy_slots "$base/$i" "$i")
        [ -f "$base/$i/slots" ] && cat "$base/$i/slots" >>"$base/slots"
        write_props "$base/$i" "$i" "${ports[$((i-1))]}" "${cports[$((i-1))]}" "$voters" 3 \
            "$slots"
        format_storage "$base/$i" "$cid"
    done
    for i in 1 2 3; do start_broker "$base/$i"; done
    wait_ready "$base/1" "$base/2" "$base/3"
    local boot="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
    echo "$boot" >"$base/bootstrap"
    echo "kafka.sh: 3-broker cluster ready in $((SECONDS - t0))s (logs: $base/*/logs)" >&2
    echo "$boot"
}

cmd_down() {
    local name=${1:-single}
    stop_dir "$cache/run/$name"
}

cmd_start() {  # start NAME: the broker `up NAME` made, stopped by `stop NAME`, again
    local name=${1:?usage: kafka.sh start NAME} dir
    dir=$cache/run/$name
    [ -f "$dir/server.properties" ] && [ -f "$dir/data/meta.properties" ] \
        || die "no stopped broker named $name in $dir (use up)"
    KAFKA_HEAP_EFFECTIVE=${KAFKA_HEAP:-512m}
    local t0=$SECONDS
    start_broker "$dir"
    wait_ready "$dir"
    echo "kafka.sh: broker $name back on 127.0.0.1:$(cat "$dir/port") in $((SECONDS - t0))s" >&2
    if [ -f "$dir/listeners" ]; then cat "$dir/listeners"; else echo "127.0.0.1:$(cat "$dir/port")"; fi
}

cmd_cluster_down() {
    local name=${1:-cluster} i
    for i in 1 2 3; do stop_dir "$cache/run/$name/$i"; done
}

case "${1:-}" in
    fetch) fetch ;;
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    stop) stop_dir "$cache/run/${2:?usage: kafka.sh stop NAME}" ;;
    start) shift; cmd_start "$@" ;;
    up-sasl) shift; cmd_up_sasl "$@" ;;
    up-secure) shift; cmd_up_secure "$@" ;;
    cluster-up) shift; cmd_cluster_up "$@" ;;
    cluster-down) shift; cmd_cluster_down "$@" ;;
    broker-stop) KAFKA_HEAP_EFFECTIVE=384m; stop_dir "$cache/run/$2/$3" KILL ;;
    broker-start) KAFKA_HEAP_EFFECTIVE=${KAFKA_HEAP:-384m}; start_broker "$cache/run/$2/$3"; wait_ready "$cache/run/$2/$3" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
