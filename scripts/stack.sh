#!/usr/bin/env bash
# The real servers of flash-sale on 127.0.0.1, without Docker (docs/design.md §9):
#   Redis (apt), PostgreSQL 15 (apt), Kafka 3.9.1 KRaft (Maven Central jars),
#   Elasticsearch 8.19 (Maven Central integ-test-zip), and k6 (go install).
#
#   bash scripts/stack.sh up [name...]       start (idempotent), wait until each answers, print endpoints
#   bash scripts/stack.sh down [name...]     stop what this stack started (by pid); others are left alone
#   bash scripts/stack.sh restart [name...]  down, then up
#   bash scripts/stack.sh status [name...]   what runs, where, and who started it
#   bash scripts/stack.sh logs [name]        tail the log files (follows when stdout is a terminal)
#   bash scripts/stack.sh k6 [args...]       run the pinned k6 (built on first use)
#   bash scripts/stack.sh kafka-topics ...   kafka-topics.sh against the stack's broker, e.g. --list
#   bash scripts/stack.sh env                print the client environment variables for this stack
# names: redis postgres kafka elasticsearch (aliases: pg, es), and redis-cluster (not in the default set:
#   3 masters + 3 replicas with cluster-enabled, docs/design.md §11; `env redis-cluster` prints
#   REDIS_CLUSTER_NODES, which switches the clients to it), and prometheus (not in the default set either:
#   Debian's package, ops/prometheus/prometheus.yml scraping the api and the workers, alert rules, on 9090)
#
# Data, logs and pids live in the stack dir, downloads in the cache dir:
#   FLASHSALE_STACK_DIR  default <repo>/.stack (or /var/tmp/flash-sale-stack-<hash> for a clone the
#                        server users cannot traverse, e.g. under /root)
#   FLASHSALE_CACHE_DIR  default $HOME/.cache/flash-sale
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${FLASHSALE_STACK_DIR:-$REPO_ROOT/.stack}"
# A clone in a private directory (e.g. under /root, mode 700): the postgres and Elasticsearch OS
# users could not reach <repo>/.stack, so by default the data goes to a per-clone directory under
# /var/tmp instead (same name for the same clone, so up/down/status agree).
if [[ -z "${FLASHSALE_STACK_DIR:-}" && "$(id -u)" == 0 ]] && ! runuser -u nobody -- test -x "$REPO_ROOT" 2>/dev/null; then
  STACK_DIR="/var/tmp/flash-sale-stack-$(printf '%s' "$REPO_ROOT" | md5sum | cut -c1-10)"
fi
CACHE_DIR="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flash-sale}"
# shellcheck source=scripts/install.sh
source "$REPO_ROOT/scripts/install.sh" # install_servers, install_go: what a bare machine lacks

# Pinned versions.
KAFKA_VERSION=3.9.1
SLF4J_VERSION=1.7.36
RELOAD4J_VERSION=1.2.25
ES_VERSION=8.19.21
K6_VERSION=v1.8.1
MVN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.6.1

# Ports (fixed defaults; the variables exist for machines where one is taken).
REDIS_PORT="${FLASHSALE_REDIS_PORT:-6379}"
PG_PORT="${FLASHSALE_PG_PORT:-5432}"
KAFKA_PORT="${FLASHSALE_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${FLASHSALE_KAFKA_CONTROLLER_PORT:-9093}"
ES_PORT="${FLASHSALE_ES_PORT:-9200}"
ES_TRANSPORT_PORT="${FLASHSALE_ES_TRANSPORT_PORT:-9300}"
PROM_PORT="${FLASHSALE_PROMETHEUS_PORT:-9090}"
HOST=127.0.0.1
# Redis Cluster: FLASHSALE_REDIS_CLUSTER_PORTS (comma or space separated, an even number >= 6:
# half masters, half replicas) or 6 consecutive ports from FLASHSALE_REDIS_CLUSTER_BASE_PORT.
REDIS_CLUSTER_BASE_PORT="${FLASHSALE_REDIS_CLUSTER_BASE_PORT:-7000}"
if [[ -n "${FLASHSALE_REDIS_CLUSTER_PORTS:-}" ]]; then
  read -r -a REDIS_CLUSTER_PORTS <<<"${FLASHSALE_REDIS_CLUSTER_PORTS//,/ }"
else
  mapfile -t REDIS_CLUSTER_PORTS < <(seq "$REDIS_CLUSTER_BASE_PORT" $((REDIS_CLUSTER_BASE_PORT + 5)))
fi
# How long a master may be unreachable before its replica takes over (Redis' default is 15 s; a
# failover drill should not take that long, and 5 s still rides out a GC pause of a neighbour JVM).
REDIS_CLUSTER_NODE_TIMEOUT="${FLASHSALE_REDIS_CLUSTER_NODE_TIMEOUT:-5000}"

PG_DB=flashsale
PG_USER=flashsale
PG_PASSWORD=flashsale
ES_OS_USER="${FLASHSALE_ES_USER:-flashsale-es}"
PG_OS_USER="${FLASHSALE_PG_USER:-postgres}"

KAFKA_HEAP="${FLASHSALE_KAFKA_HEAP:-512m}"
ES_HEAP="${FLASHSALE_ES_HEAP:-1g}"

ALL_SERVERS=(redis postgres kafka elasticsearch)
RUN_DIR="$STACK_DIR/run"
LOG_DIR="$STACK_DIR/logs"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
ES_DIST="$CACHE_DIR/elasticsearch-$ES_VERSION"
K6_BIN="$CACHE_DIR/k6-$K6_VERSION/k6"

IS_ROOT=0
[[ "$(id -u)" == 0 ]] && IS_ROOT=1

# ---------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
info() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

canonical() {
  case "$1" in
    redis) echo redis ;;
    pg | postgres | postgresql) echo postgres ;;
    kafka) echo kafka ;;
    es | elastic | elasticsearch) echo elasticsearch ;;
    redis-cluster | cluster) echo redis-cluster ;;
    prometheus | prom) echo prometheus ;;
    *) die "unknown server '$1' (known: ${ALL_SERVERS[*]} redis-cluster prometheus; aliases pg, es, prom)" ;;
  esac
}

port_of() {
  case "$1" in
    redis) echo "$REDIS_PORT" ;; postgres) echo "$PG_PORT" ;;
    kafka) echo "$KAFKA_PORT" ;; elasticsearch) echo "$ES_PORT" ;;
    redis-cluster) echo "${REDIS_CLUSTER_PORTS[0]}" ;;
    prometheus) echo "$PROM_PORT" ;;
    redis-cluster-*) echo "${1#redis-cluster-}" ;; # one node of it
  esac
}

endpoint_of() {
  case "$1" in
    redis) echo "REDIS_URL=redis://$HOST:$REDIS_PORT" ;;
    postgres) echo "DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB" ;;
    kafka) echo "KAFKA_BROKERS=$HOST:$KAFKA_PORT" ;;
    elasticsearch) echo "ELASTICSEARCH_URL=http://$HOST:$ES_PORT" ;;
    prometheus) echo "PROMETHEUS_URL=http://$HOST:$PROM_PORT" ;;
    redis-cluster) echo "REDIS_CLUSTER_NODES=$(printf "$HOST:%s," "${REDIS_CLUSTER_PORTS[@]}" | sed 's/,$//')" ;;
  esac
}

log_file_of() {
  case "$1" in
    elasticsearch) echo "$STACK_DIR/elasticsearch/logs/flashsale.log" ;;
    *) echo "$LOG_DIR/$1.log" ;;
  esac
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# A pid file names a process this stack started: "<pid> <start time>". It only counts while
# that very process lives (same pid and same start time), so a recycled pid is never signalled.
pid_file() { echo "$RUN_DIR/$1.pid"; }
proc_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
record_pid() { # record_pid <name> <pid>
  local st
  st="$(proc_start "$2")"
  [[ -n "$st" ]] || return 1
  echo "$2 $st" >"$(pid_file "$1")"
}
owned_pid() {
  local f pid st
  f="$(pid_file "$1")"
  [[ -s "$f" ]] || return 1
  read -r pid st <"$f" || true
  [[ "$pid" =~ ^[0-9]+$ && -n "$st" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [[ "$(proc_start "$pid")" == "$st" ]] || return 1
  echo "$pid"
}

# Run a command as another OS user (root only); as a normal user, run it as yourself.
as_user() {
  local user="$1"; shift
  if [[ $IS_ROOT == 1 && "$user" != root ]]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

# Can `user` read `path` (every parent directory must be traversable)?
user_can_read() {
  local user="$1" path="$2"
  [[ $IS_ROOT == 1 ]] || { [[ -r "$path" ]]; return; }
  runuser -u "$user" -- test -r "$path" 2>/dev/null
}

tail_log() {
  local f
  f="$(log_file_of "$1")"
  if [[ -f "$f" ]]; then
    printf '[stack] --- last lines of %s ---\n' "$f" >&2
    tail -n 30 "$f" >&2 || true
  fi
}

# ---------------------------------------------------------------- prerequisites

find_java_home() {
  local java
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    java="$JAVA_HOME/bin/java"
  else
    java="$(command -v java || true)"
    [[ -n "$java" ]] || die "Java 17 or newer is needed for Kafka and Elasticsearch but 'java' is not on PATH. Install it: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)."
    java="$(readlink -f "$java")"
  fi
  local major
  major="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1)"
  [[ -n "$major" && "$major" -ge 17 ]] || die "Java 17 or newer is needed (found: $("$java" -version 2>&1 | head -n1)). Install openjdk-17-jre-headless or set JAVA_HOME."
  dirname "$(dirname "$java")"
}

need_maven() {
  command -v mvn >/dev/null || die "Maven is needed once to download $1 from Maven Central into $CACHE_DIR (later runs use the cache). Install it: apt-get install maven."
}

find_pg_bin() {
  local d
  for d in "${FLASHSALE_PG_BIN:-}" /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null || true)"; do
    [[ -n "$d" && -x "$d/initdb" && -x "$d/postgres" ]] && { echo "$d"; return; }
  done
  die "PostgreSQL 15 server binaries not found (looked in /usr/lib/postgresql/15/bin). Install them: apt-get install postgresql-15 (or set FLASHSALE_PG_BIN)."
}

# Maven: one tiny pom in the cache dir, a local repository inside the cache dir, pinned plugin.
mvn_fetch() { # mvn_fetch <plugin:goal> <args...>
  local work="$CACHE_DIR/maven"
  mkdir -p "$work"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.flashsale</groupId><artifactId>stack-downloads</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- only for the command-line tools (TopicCommand); everything they need is already above -->
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>ch.qos.reload4j</groupId><artifactId>reload4j</artifactId><version>$RELOAD4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  local log="$work/mvn-$1.log"
  log="${log//[:]/_}"
  if ! (cd "$work" && mvn -B -ntp -Dstyle.color=never -Dmaven.repo.local="$CACHE_DIR/m2" "$@" >"$log" 2>&1); then
    tail -n 40 "$log" >&2
    return 1
  fi
}

# Downloads into the shared cache are serialized across parallel jobs and concurrent `up`s of
# other clones: take the lock, then look again.
cache_lock() { # cache_lock <name>
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.lock-$1"
  flock -w 900 8 || die "timed out waiting for $CACHE_DIR/.lock-$1"
}
cache_unlock() { flock -u 8 2>/dev/null || true; exec 8>&-; }

kafka_installed() { [[ -f "$KAFKA_LIBS/.complete" && -f "$KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar" ]]; }
install_kafka() {
  kafka_installed && return 0
  cache_lock maven
  if kafka_installed; then cache_unlock; return 0; fi
  need_maven "Kafka $KAFKA_VERSION"
  info "downloading Kafka $KAFKA_VERSION jars from Maven Central (once) ..."
  rm -rf "$KAFKA_LIBS.tmp"
  mvn_fetch "$MVN_DEPENDENCY_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" \
    || die "Maven could not download Kafka (see the output above)."
  ls "$KAFKA_LIBS.tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null
  touch "$KAFKA_LIBS.tmp/.complete"
  rm -rf "$KAFKA_LIBS" && mkdir -p "$(dirname "$KAFKA_LIBS")" && mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
  cache_unlock
}

install_elasticsearch() {
  [[ -f "$ES_DIST/.complete" ]] && return 0
  cache_lock maven
  if [[ -f "$ES_DIST/.complete" ]]; then cache_unlock; return 0; fi
  need_maven "Elasticsearch $ES_VERSION"
  info "downloading Elasticsearch $ES_VERSION (integ-test-zip, ~100 MB) from Maven Central (once) ..."
  local dl="$CACHE_DIR/downloads"
  mkdir -p "$dl"
  mvn_fetch "$MVN_DEPENDENCY_PLUGIN:copy" \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" -DoutputDirectory="$dl" \
    || die "Maven could not download Elasticsearch (see the output above)."
  rm -rf "$ES_DIST.tmp" && mkdir -p "$ES_DIST.tmp"
  if command -v unzip >/dev/null; then
    unzip -q "$dl/elasticsearch-$ES_VERSION.zip" -d "$ES_DIST.tmp"
  else
    (cd "$ES_DIST.tmp" && "$(find_java_home)/bin/jar" xf "$dl/elasticsearch-$ES_VERSION.zip")
    chmod -R a+x "$ES_DIST.tmp/elasticsearch-$ES_VERSION/bin"
  fi
  # Unpacked now: neither the copy nor Maven's (~100 MB each) is needed any more.
  rm -f "$dl/elasticsearch-$ES_VERSION.zip"
  rm -rf "$CACHE_DIR/m2/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION"
  chmod -R a+rX "$ES_DIST.tmp"
  touch "$ES_DIST.tmp/elasticsearch-$ES_VERSION/.complete"
  rm -rf "$ES_DIST" && mv "$ES_DIST.tmp/elasticsearch-$ES_VERSION" "$ES_DIST" && rm -rf "$ES_DIST.tmp"
  cache_unlock
}

install_k6() {
  [[ -x "$K6_BIN" ]] && return 0
  command -v go >/dev/null || install_go || { info "k6 skipped: Go is needed to build it. Only load tests need k6."; return 1; }
  cache_lock k6
  if [[ -x "$K6_BIN" ]]; then cache_unlock; return 0; fi
  info "building k6 $K6_VERSION with go install (once, takes a few minutes) ..."
  mkdir -p "$(dirname "$K6_BIN")" "$LOG_DIR"
  if GOBIN="$(dirname "$K6_BIN")" GOFLAGS=-buildvcs=false go install "go.k6.io/k6@$K6_VERSION" >"$LOG_DIR/k6-build.log" 2>&1; then
    cache_unlock
    return 0
  fi
  cache_unlock
  tail -n 20 "$LOG_DIR/k6-build.log" >&2
  info "k6 build failed (log: $LOG_DIR/k6-build.log)"
  return 1
}

# ---------------------------------------------------------------- probes

probe() {
  case "$1" in
    redis)
      if command -v redis-cli >/dev/null; then
        [[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
      else
        local reply
        exec 4<>"/dev/tcp/$HOST/$REDIS_PORT" || return 1
        printf 'PING\r\n' >&4 && IFS= read -r -t 2 reply <&4
        exec 4>&-
        [[ "$reply" == $'+PONG\r' ]]
      fi
      ;;
    postgres)
      [[ "$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 "$(find_pg_bin)/psql" -X -q -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -tAc 'SELECT 1' 2>/dev/null)" == 1 ]]
      ;;
    kafka)
      # A metadata round trip through the Kafka admin client (kafka-topics.sh --list).
      port_open "$KAFKA_PORT" || return 1
      install_kafka >&2
      kafka_tool org.apache.kafka.tools.TopicCommand --list --bootstrap-server "$HOST:$KAFKA_PORT" >/dev/null 2>&1
      ;;
    prometheus)
      curl -fsS -m 3 "http://$HOST:$PROM_PORT/-/ready" >/dev/null 2>&1
      ;;
    elasticsearch)
      curl -fsS -m 5 "http://$HOST:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=3s" 2>/dev/null | grep -q '"status":"\(yellow\|green\)"'
      ;;
  esac
}

# kafka_tool <main class> <args...>: a Kafka command-line tool from the cached jars.
kafka_tool() {
  local props="$CACHE_DIR/kafka-$KAFKA_VERSION/tools-log4j.properties"
  [[ -f "$props" ]] || printf '%s\n' 'log4j.rootLogger=ERROR, stderr' 'log4j.appender.stderr=org.apache.log4j.ConsoleAppender' \
    'log4j.appender.stderr.Target=System.err' 'log4j.appender.stderr.layout=org.apache.log4j.PatternLayout' \
    'log4j.appender.stderr.layout.ConversionPattern=%p %m (%c)%n' >"$props"
  timeout 60 "$(find_java_home)/bin/java" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$KAFKA_LIBS/*" \
    -Dlog4j.configuration="file:$props" "$@"
}

# wait_ready <name> <seconds> [pid]: poll the probe; fail early when our process died.
wait_ready() {
  local name="$1" budget="$2" pid="${3:-}" start=$SECONDS
  while ((SECONDS - start < budget)); do
    if probe "$name"; then return 0; fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      # Our process exited. Someone else may have taken the port meanwhile (a parallel `up`).
      if port_open "$(port_of "$name")" && probe "$name"; then rm -f "$(pid_file "$name")"; return 0; fi
      info "$name exited during start-up"
      tail_log "$name"
      return 1
    fi
    sleep 0.5
  done
  info "$name did not answer within ${budget}s"
  tail_log "$name"
  return 1
}

# ---------------------------------------------------------------- redis

start_redis() {
  command -v redis-server >/dev/null || die "redis-server not found. Install it: apt-get install redis-server"
  mkdir -p "$STACK_DIR/redis"
  redis-server --bind "$HOST" --port "$REDIS_PORT" --dir "$STACK_DIR/redis" \
    --appendonly yes --appendfsync everysec --appendfilename appendonly.aof \
    --daemonize yes --pidfile "$RUN_DIR/redis-server.pid" --logfile "$(log_file_of redis)" \
    --save "" --protected-mode yes --maxclients 10000
  local i
  for i in $(seq 1 50); do [[ -s "$RUN_DIR/redis-server.pid" ]] && break; sleep 0.1; done
  record_pid redis "$(tr -dc '0-9' <"$RUN_DIR/redis-server.pid")"
}

# ---------------------------------------------------------------- redis cluster

# The write side scaled out (docs/design.md §11): the same apt redis-server, one process per port,
# each with its own dir (nodes.conf, AOF) and pid file "redis-cluster-<port>". Shards are independent,
# so a slot without a master must not stop the others: cluster-require-full-coverage no (the default
# yes answers CLUSTERDOWN for every slot until the failover ends). `redis-cli --cluster
# create` assigns the first half of the ports as masters and the rest as their replicas; after a
# failover the roles move, which is why nothing here assumes them.

# Never fails (set -e, pipefail): a node that does not answer gives empty output.
rc_cli() { timeout 5 redis-cli -h "$HOST" -p "$1" "${@:2}" 2>/dev/null || true; }
rc_info() { rc_cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"; }

start_redis_cluster_node() { # start_redis_cluster_node <port>
  local port="$1" name="redis-cluster-$1" dir="$STACK_DIR/redis-cluster/$1"
  command -v redis-server >/dev/null || die "redis-server not found. Install it: apt-get install redis-server"
  mkdir -p "$dir"
  rm -f "$RUN_DIR/$name.server.pid"
  redis-server --bind "$HOST" --port "$port" --dir "$dir" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$REDIS_CLUSTER_NODE_TIMEOUT" \
    --cluster-require-full-coverage no \
    --appendonly yes --appendfsync everysec --appendfilename appendonly.aof \
    --daemonize yes --pidfile "$RUN_DIR/$name.server.pid" --logfile "$(log_file_of "$name")" \
    --save "" --protected-mode yes --maxclients 10000 || return 1
  local i
  for i in $(seq 1 50); do [[ -s "$RUN_DIR/$name.server.pid" ]] && break; sleep 0.1; done
  record_pid "$name" "$(tr -dc '0-9' <"$RUN_DIR/$name.server.pid")"
}

# rc_wait_ok <seconds>: every node reports cluster_state:ok and the same number of known nodes, and
# half of them are replicas whose link to their master is up. cluster_state:ok comes before the
# replicas have their first copy, and a replica that never synced refuses to take over: a master
# killed in that window would leave its slots without an owner.
rc_wait_ok() {
  local budget="$1" start=$SECONDS p ok synced n="${#REDIS_CLUSTER_PORTS[@]}"
  while ((SECONDS - start < budget)); do
    ok=1 synced=0
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do
      [[ "$(rc_info "$p" cluster_state)" == ok && "$(rc_info "$p" cluster_known_nodes)" == "$n" ]] || { ok=0; break; }
      rc_cli "$p" info replication | tr -d '\r' | grep -q '^master_link_status:up' && synced=$((synced + 1))
    done
    ((ok && synced == n / 2)) && return 0
    sleep 0.5
  done
  return 1
}

ensure_redis_cluster() {
  local p name pid t0=$SECONDS started=() fresh=0 configured=0 n="${#REDIS_CLUSTER_PORTS[@]}"
  ((n >= 6 && n % 2 == 0)) || die "FLASHSALE_REDIS_CLUSTER_PORTS: an even number of ports, at least 6 (3 masters + 3 replicas); got ${REDIS_CLUSTER_PORTS[*]}"
  command -v redis-cli >/dev/null || die "redis-cli not found. Install it: apt-get install redis-tools"
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    name="redis-cluster-$p"
    if owned_pid "$name" >/dev/null; then continue; fi
    rm -f "$(pid_file "$name")"
    if port_open "$p"; then
      [[ "$(rc_cli "$p" ping)" == PONG && -n "$(rc_info "$p" cluster_state)" ]] \
        || { info "something listens on $HOST:$p but is not a cluster-enabled Redis; stop it or choose other ports (FLASHSALE_REDIS_CLUSTER_BASE_PORT)"; return 1; }
      continue # a node of someone else's cluster on these ports: used as it is, never stopped
    fi
    [[ -n "${STARTED_MARKS:-}" ]] && touch "$STARTED_MARKS/$name"
    start_redis_cluster_node "$p" 9>&- || { info "$name failed to start (log: $(log_file_of "$name"))"; return 1; }
    started+=("$p")
  done
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    local i
    for ((i = 0; i < 100; i++)); do [[ "$(rc_cli "$p" ping)" == PONG ]] && break; sleep 0.2; done
    [[ "$(rc_cli "$p" ping)" == PONG ]] || { info "redis-cluster node $p does not answer"; tail_log "redis-cluster-$p"; return 1; }
    if [[ "$(rc_info "$p" cluster_known_nodes)" == 1 && "$(rc_info "$p" cluster_slots_assigned)" == 0 ]]; then
      fresh=$((fresh + 1))
    else
      configured=$((configured + 1))
    fi
  done
  if ((fresh == n)); then
    info "creating the cluster: $((n / 2)) masters, $((n / 2)) replicas on ports ${REDIS_CLUSTER_PORTS[*]}"
    local nodes=()
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do nodes+=("$HOST:$p"); done
    if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$LOG_DIR/redis-cluster-create.log" 2>&1; then
      cat "$LOG_DIR/redis-cluster-create.log" >&2
      # Nodes half-way into a cluster would make the next `up` refuse; start them clean next time.
      for p in "${started[@]}"; do stop_one "redis-cluster-$p" >&2; rm -rf "${STACK_DIR:?}/redis-cluster/$p"; done
      return 1
    fi
  elif ((fresh > 0)); then
    # Some nodes remember a cluster (nodes.conf) and some do not: joining them by hand is an
    # operator's decision, not something `up` should guess.
    info "redis-cluster: $configured node(s) belong to a cluster and $fresh are empty; run 'bash scripts/stack.sh down redis-cluster' and remove $STACK_DIR/redis-cluster to start over"
    return 1
  fi
  # Nodes restarted from their nodes.conf re-form the cluster by themselves; wait for it either way.
  if ! rc_wait_ok 90; then
    info "redis-cluster did not reach cluster_state:ok within 90s"
    rc_cli "${REDIS_CLUSTER_PORTS[0]}" cluster nodes >&2 || true
    return 1
  fi
  if ((${#started[@]})); then
    say "redis-cluster: started ${#started[@]} node(s) in $((SECONDS - t0))s, cluster_state:ok  $(endpoint_of redis-cluster)"
  else
    say "redis-cluster: running, cluster_state:ok  $(endpoint_of redis-cluster)"
  fi
}

stop_redis_cluster() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do stop_one "redis-cluster-$p"; done
}

status_redis_cluster() {
  local p pid role state any=0
  state="$(rc_info "${REDIS_CLUSTER_PORTS[0]}" cluster_state)"
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do port_open "$p" && any=1; done
  ((any)) || { say "redis-cluster: stopped (ports ${REDIS_CLUSTER_PORTS[*]})"; return 0; }
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    role="$(rc_cli "$p" role | head -n1)"
    if pid="$(owned_pid "redis-cluster-$p")"; then
      say "redis-cluster-$p: running (pid $pid, ${role:-not answering}) on $HOST:$p"
    elif port_open "$p"; then
      say "redis-cluster-$p: answering on $HOST:$p (${role:-?}), not started by this stack"
    else
      say "redis-cluster-$p: stopped"
    fi
  done
  if [[ -n "$state" ]]; then say "redis-cluster: cluster_state:$state  $(endpoint_of redis-cluster)"; else say "redis-cluster: stopped"; fi
}

# ---------------------------------------------------------------- postgres

pg_socket_dir() {
  local d="$STACK_DIR/postgres/socket"
  # Unix socket paths are limited to ~107 bytes.
  if ((${#d} > 90)); then d="/tmp/flashsale-pg-$(printf '%s' "$STACK_DIR" | md5sum | cut -c1-10)"; fi
  echo "$d"
}

start_postgres() {
  local bin data sock
  bin="$(find_pg_bin)"
  data="$STACK_DIR/postgres/data"
  sock="$(pg_socket_dir)"
  if [[ $IS_ROOT == 1 ]]; then
    id "$PG_OS_USER" >/dev/null 2>&1 || die "OS user '$PG_OS_USER' is missing (it comes with apt-get install postgresql-15); initdb refuses to run as root."
  fi
  mkdir -p "$STACK_DIR/postgres" "$sock"
  if [[ $IS_ROOT == 1 ]]; then chown "$PG_OS_USER" "$STACK_DIR/postgres" "$sock"; fi
  user_can_read "$PG_OS_USER" "$STACK_DIR/postgres" \
    || die "the '$PG_OS_USER' OS user cannot reach $STACK_DIR (a private home directory?). Set FLASHSALE_STACK_DIR to a path it can traverse, e.g. /var/tmp/flash-sale-stack."
  if [[ ! -f "$data/PG_VERSION" ]]; then
    info "initdb $data"
    rm -rf "$data"
    as_user "$PG_OS_USER" "$bin/initdb" -D "$data" -U postgres -E UTF8 --no-locale \
      --auth-local=trust --auth-host=scram-sha-256 >"$LOG_DIR/postgres-initdb.log" 2>&1 \
      || { cat "$LOG_DIR/postgres-initdb.log" >&2; die "initdb failed"; }
    cat >>"$data/postgresql.conf" <<EOF

# flash-sale stack (scripts/stack.sh)
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$sock'
max_connections = 300
shared_buffers = 128MB
fsync = on
synchronous_commit = on
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  fi
  # The log file must be writable by the server's user.
  touch "$(log_file_of postgres)"
  if [[ $IS_ROOT == 1 ]]; then chown "$PG_OS_USER" "$(log_file_of postgres)"; fi
  rm -f "$data/postmaster.pid.stale"
  as_user "$PG_OS_USER" "$bin/pg_ctl" start -D "$data" -l "$(log_file_of postgres)" -w -t 60 -s \
    -o "-p $PG_PORT -k $sock" >/dev/null 2>&1 || { tail_log postgres; return 1; }
  record_pid postgres "$(head -n1 "$data/postmaster.pid" | tr -dc '0-9')"
  bootstrap_postgres
}

# Role and database for the apps and tests; idempotent.
bootstrap_postgres() {
  local bin sock
  bin="$(find_pg_bin)"
  sock="$(pg_socket_dir)"
  psql_su() { as_user "$PG_OS_USER" "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$PG_PORT" -U postgres -d postgres -tA "$@"; }
  if [[ "$(psql_su -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != 1 ]]; then
    psql_su -c "CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
  else
    psql_su -c "ALTER ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'"
  fi
  if [[ "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]]; then
    psql_su -c "CREATE DATABASE $PG_DB OWNER $PG_USER"
  fi
}

# ---------------------------------------------------------------- kafka

write_kafka_config() {
  local dir="$STACK_DIR/kafka"
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
# flash-sale stack: single combined KRaft node (broker + controller). Generated by scripts/stack.sh.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=12
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=168
EOF
  cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.kafka.log.LogCleaner=WARN
EOF
}

start_kafka() {
  local java dir
  java="$(find_java_home)/bin/java"
  install_kafka
  dir="$STACK_DIR/kafka"
  write_kafka_config
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid)"
    info "formatting Kafka storage (cluster id $cluster_id)"
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" --ignore-formatted >>"$(log_file_of kafka)" 2>&1 \
      || { tail_log kafka; die "Kafka storage format failed"; }
  fi
  # The process writes its own pid before exec, so the pid file names the JVM itself.
  rm -f "$RUN_DIR/kafka-jvm.pid"
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$RUN_DIR/kafka-jvm.pid" \
    "$java" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$(log_file_of kafka)" 2>&1 &
  local i
  for i in $(seq 1 50); do [[ -s "$RUN_DIR/kafka-jvm.pid" ]] && break; sleep 0.1; done
  sleep 0.2 # let the exec happen, so the start time is the JVM's (exec keeps it anyway)
  record_pid kafka "$(tr -dc '0-9' <"$RUN_DIR/kafka-jvm.pid")"
}

# ---------------------------------------------------------------- elasticsearch

start_elasticsearch() {
  local java_home dir home
  java_home="$(find_java_home)"
  install_elasticsearch
  dir="$STACK_DIR/elasticsearch"
  mkdir -p "$dir"/{config,data,logs,tmp,run}
  if [[ $IS_ROOT == 1 ]]; then
    # Elasticsearch refuses to run as root: it gets its own system user.
    if ! id "$ES_OS_USER" >/dev/null 2>&1; then
      info "creating OS user $ES_OS_USER for Elasticsearch"
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_OS_USER"
    fi
  fi
  # The distribution must be readable by that user; a cache under /root is not, so link a copy.
  home="$ES_DIST"
  if ! user_can_read "$ES_OS_USER" "$ES_DIST/bin/elasticsearch"; then
    home="$dir/home-$ES_VERSION"
    if [[ ! -f "$home/.complete" ]]; then
      rm -rf "$home"
      cp -al "$ES_DIST" "$home" 2>/dev/null || cp -a "$ES_DIST" "$home"
    fi
    user_can_read "$ES_OS_USER" "$home/bin/elasticsearch" \
      || die "the '$ES_OS_USER' OS user cannot reach $STACK_DIR. Set FLASHSALE_STACK_DIR to a path it can traverse."
  fi
  cp -a "$home/config/jvm.options" "$home/config/log4j2.properties" "$dir/config/"
  mkdir -p "$dir/config/jvm.options.d"
  cat >"$dir/config/jvm.options.d/flashsale.options" <<EOF
-Xms$ES_HEAP
-Xmx$ES_HEAP
EOF
  cat >"$dir/config/elasticsearch.yml" <<EOF
# flash-sale stack: single node, security off, loopback only. Generated by scripts/stack.sh.
cluster.name: flashsale
node.name: flashsale-1
path.data: $dir/data
path.logs: $dir/logs
network.host: $HOST
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
discovery.type: single-node
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
cluster.routing.allocation.disk.watermark.low: 97%
cluster.routing.allocation.disk.watermark.high: 98%
cluster.routing.allocation.disk.watermark.flood_stage: 99%
EOF
  if [[ $IS_ROOT == 1 ]]; then chown -R "$ES_OS_USER" "$dir/config" "$dir/data" "$dir/logs" "$dir/tmp" "$dir/run"; fi
  rm -f "$dir/run/es.pid"
  # -d: daemonize; the launcher exits once the node runs and writes the node's pid to -p.
  (
    cd "$dir"
    as_user "$ES_OS_USER" env ES_PATH_CONF="$dir/config" ES_JAVA_HOME="$java_home" ES_TMPDIR="$dir/tmp" \
      ES_JAVA_OPTS="-Xms$ES_HEAP -Xmx$ES_HEAP" \
      setsid "$home/bin/elasticsearch" -d -p "$dir/run/es.pid" </dev/null >"$LOG_DIR/elasticsearch-launcher.log" 2>&1
  ) || { cat "$LOG_DIR/elasticsearch-launcher.log" >&2; tail_log elasticsearch; return 1; }
  [[ -s "$dir/run/es.pid" ]] || { cat "$LOG_DIR/elasticsearch-launcher.log" >&2; return 1; }
  record_pid elasticsearch "$(tr -dc '0-9' <"$dir/run/es.pid")"
}

# ---------------------------------------------------------------- prometheus

# Debian's prometheus with the repository's config and rules (ops/prometheus); data in the stack dir.
start_prometheus() {
  install_prometheus
  mkdir -p "$STACK_DIR/prometheus"
  rm -f "$RUN_DIR/prometheus-server.pid"
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$RUN_DIR/prometheus-server.pid" \
    prometheus --config.file="$REPO_ROOT/ops/prometheus/prometheus.yml" --storage.tsdb.path="$STACK_DIR/prometheus" \
    --storage.tsdb.retention.time=7d --web.listen-address="$HOST:$PROM_PORT" \
    </dev/null >>"$(log_file_of prometheus)" 2>&1 &
  local i
  for i in $(seq 1 50); do [[ -s "$RUN_DIR/prometheus-server.pid" ]] && break; sleep 0.1; done
  record_pid prometheus "$(tr -dc '0-9' <"$RUN_DIR/prometheus-server.pid")"
}

# ---------------------------------------------------------------- up / down / status

# ensure <name>: leave a running server alone, else start ours; wait until it answers.
ensure() {
  local name="$1" pid port budget
  [[ "$name" == redis-cluster ]] && { ensure_redis_cluster; return; }
  port="$(port_of "$name")"
  case "$name" in redis | prometheus) budget=30 ;; postgres) budget=60 ;; kafka) budget=120 ;; elasticsearch) budget=180 ;; esac
  if pid="$(owned_pid "$name")"; then
    wait_ready "$name" "$budget" "$pid" || return 1
    [[ "$name" == postgres ]] && bootstrap_postgres
    say "$name: running (pid $pid) on $HOST:$port  $(endpoint_of "$name")"
    return 0
  fi
  rm -f "$(pid_file "$name")"
  if port_open "$port"; then
    if wait_ready "$name" 30; then
      say "$name: already answering on $HOST:$port (not started by this stack; left alone)  $(endpoint_of "$name")"
      return 0
    fi
    case "$name" in
      postgres) info "something listens on $HOST:$port but 'SELECT 1' as $PG_USER/$PG_PASSWORD on database $PG_DB fails. If it is the distribution's cluster, stop it (pg_ctlcluster 15 main stop) or create that role and database." ;;
      *) info "something listens on $HOST:$port but does not answer like $name; stop it or free the port." ;;
    esac
    return 1
  fi
  local t0=$SECONDS
  # fd 9 is the stack lock: the servers must not inherit it.
  # Whatever happens next, this run started it: a failed `up` stops it again (STARTED_MARKS).
  [[ -n "${STARTED_MARKS:-}" ]] && touch "$STARTED_MARKS/$name"
  "start_$name" 9>&- || { info "$name failed to start (log: $(log_file_of "$name"))"; return 1; }
  pid="$(owned_pid "$name" || true)"
  wait_ready "$name" "$budget" "$pid" || return 1
  say "$name: started (pid ${pid:-?}) in $((SECONDS - t0))s on $HOST:$port  $(endpoint_of "$name")"
}

stop_one() {
  local name="$1" pid sig=TERM budget=30 i
  [[ "$name" == redis-cluster ]] && { stop_redis_cluster; return; }
  if ! pid="$(owned_pid "$name")"; then
    rm -f "$(pid_file "$name")"
    if port_open "$(port_of "$name")"; then
      say "$name: not started by this stack; left running"
    else
      say "$name: not running"
    fi
    return 0
  fi
  # PostgreSQL: SIGINT is the "fast" shutdown (SIGTERM would wait for every client to leave).
  [[ "$name" == postgres ]] && sig=INT
  kill -s "$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < budget * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    info "$name (pid $pid) still running after ${budget}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$(pid_file "$name")"
  say "$name: stopped (pid $pid)"
}

status_one() {
  local name="$1" pid port
  [[ "$name" == redis-cluster ]] && { status_redis_cluster; return; }
  port="$(port_of "$name")"
  if pid="$(owned_pid "$name")"; then
    local rss
    rss="$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ')"
    if probe "$name"; then
      say "$name: running (pid $pid, rss $((${rss:-0} / 1024)) MiB) on $HOST:$port  $(endpoint_of "$name")"
    else
      say "$name: starting or unhealthy (pid $pid) on $HOST:$port"
    fi
  elif port_open "$port"; then
    say "$name: answering on $HOST:$port, not started by this stack"
  else
    say "$name: stopped"
  fi
}

lock_stack() {
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  exec 9>"$RUN_DIR/.lock"
  flock -w 600 9 || die "another stack.sh holds $RUN_DIR/.lock"
}

names_or_all() {
  if (($# == 0)); then printf '%s\n' "${ALL_SERVERS[@]}"; else for n in "$@"; do canonical "$n"; done; fi
}

cmd_up() {
  local names t0=$SECONDS
  mapfile -t names < <(names_or_all "$@")
  lock_stack
  install_servers
  local want_k6=0 n
  (($# == 0)) && want_k6=1
  # Fast ones in the foreground; the JVMs (and the k6 build) in parallel.
  local -A jobs=()
  local out="$RUN_DIR/up.$$"
  mkdir -p "$out/started"
  export STARTED_MARKS="$out/started"
  for n in "${names[@]}"; do
    case "$n" in
      kafka | elasticsearch) (ensure "$n" >"$out/$n.out") & jobs[$n]=$! ;;
    esac
  done
  if ((want_k6)); then (install_k6 >"$out/k6.out" 2>&1) & jobs[k6]=$!; fi
  local failed=()
  for n in "${names[@]}"; do
    case "$n" in
      redis | postgres | redis-cluster | prometheus) ensure "$n" || failed+=("$n") ;;
    esac
  done
  for n in "${names[@]}"; do
    if [[ -n "${jobs[$n]:-}" ]]; then
      wait "${jobs[$n]}" || failed+=("$n")
      cat "$out/$n.out"
    fi
  done
  if [[ -n "${jobs[k6]:-}" ]] && ((${#failed[@]} == 0)); then
    if wait "${jobs[k6]}"; then
      say "k6: $K6_BIN ($K6_VERSION)"
    else
      cat "$out/k6.out" >&2
      say "k6: not available (load tests only; see above)"
    fi
  fi
  if ((${#failed[@]})); then
    # A failed `up` leaves no orphans: stop what this very run started (servers that were already
    # running before it are left alone), and the k6 build.
    [[ -n "${jobs[k6]:-}" ]] && { pkill -P "${jobs[k6]}" 2>/dev/null || true; kill "${jobs[k6]}" 2>/dev/null || true; }
    local started
    for started in "$out"/started/*; do
      [[ -e "$started" ]] || continue
      info "stopping $(basename "$started"), which this failed run started"
      stop_one "$(basename "$started")" >&2
    done
    rm -rf "$out"
    die "not up: ${failed[*]} (logs: bash scripts/stack.sh logs <name>)"
  fi
  rm -rf "$out"
  say "stack up in $((SECONDS - t0))s (data: $STACK_DIR, cache: $CACHE_DIR)"
}

cmd_down() {
  local names n i
  mapfile -t names < <(names_or_all "$@")
  # Plain `down` stops everything this stack started, the cluster too (its nodes first, below).
  (($# == 0)) && names=(redis-cluster "${names[@]}" prometheus)
  lock_stack
  # Reverse order: search and Kafka first, the stores last.
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do stop_one "${names[$i]}"; done
}

cmd_status() {
  local names n
  mapfile -t names < <(names_or_all "$@")
  for n in "${names[@]}"; do status_one "$n"; done
  (($# == 0)) && status_one redis-cluster && status_one prometheus
  if [[ -x "$K6_BIN" ]]; then say "k6: $K6_BIN"; else say "k6: not built"; fi
}

cmd_logs() {
  local files=() n
  if (($# == 0)); then
    for n in "${ALL_SERVERS[@]}"; do [[ -f "$(log_file_of "$n")" ]] && files+=("$(log_file_of "$n")"); done
  else
    n="$(canonical "$1")"
    if [[ "$n" == redis-cluster ]]; then
      for p in "${REDIS_CLUSTER_PORTS[@]}"; do [[ -f "$(log_file_of "redis-cluster-$p")" ]] && files+=("$(log_file_of "redis-cluster-$p")"); done
    else
      files=("$(log_file_of "$n")")
    fi
  fi
  ((${#files[@]})) || die "no log files yet in $STACK_DIR"
  if [[ -t 1 ]]; then exec tail -n 100 -F "${files[@]}"; else exec tail -n 200 "${files[@]}"; fi
}

# env [name...]: without names the default servers, and the cluster as a comment (setting
# REDIS_CLUSTER_NODES switches every client from REDIS_URL to the cluster, so it is opt-in).
cmd_env() {
  local n
  if (($#)); then
    for n in "$@"; do say "$(endpoint_of "$(canonical "$n")")"; done
    return
  fi
  for n in "${ALL_SERVERS[@]}"; do say "$(endpoint_of "$n")"; done
  say "# $(endpoint_of redis-cluster)   (bash scripts/stack.sh up redis-cluster; env redis-cluster)"
}

cmd_kafka_topics() {
  install_kafka
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" "$@"
}

cmd_k6() {
  install_k6 || die "k6 is not available"
  exec "$K6_BIN" "$@"
}

usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
}

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down | stop) cmd_down "$@" ;;
    restart) cmd_down "$@"; cmd_up "$@" ;;
    status) cmd_status "$@" ;;
    logs) cmd_logs "$@" ;;
    env) cmd_env "$@" ;;
    k6) cmd_k6 "$@" ;;
    kafka-topics) cmd_kafka_topics "$@" ;;
    -h | --help | help | "") usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

# Sourcing this file (scripts/up.sh does) gives its functions without running a command.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
