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
#   bash scripts/stack.sh kafka-quorum ...   kafka-metadata-quorum.sh against the Kafka cluster, e.g. describe --status
#   bash scripts/stack.sh kafka-transactions ...   kafka-transactions.sh against the Kafka cluster, e.g. list, find-hanging --broker-id 1
#   bash scripts/stack.sh env                print the client environment variables for this stack
# names: redis postgres kafka elasticsearch (aliases: pg, es), and redis-cluster (not in the default set:
#   3 masters + 3 replicas with cluster-enabled, docs/design.md §11; `env redis-cluster` prints
#   REDIS_CLUSTER_NODES, which switches the clients to it), kafka-cluster (not in the default set: three
#   KRaft brokers, topics RF 3 / min.insync.replicas 2; `env kafka-cluster` prints their KAFKA_BROKERS), and prometheus (not in the default set either:
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
# Redis memory (docs/design.md §3): a limit, and noeviction, so at the limit writes are refused rather
# than holds, stocks or outbox entries silently evicted. Sized for a shared dev box (24 GiB; the stack's
# Redis holds ~200 MB after a day of everyone's tests); production sizes it to the host, alerting at 80 %.
REDIS_MAXMEMORY="${FLASHSALE_REDIS_MAXMEMORY:-4gb}"
REDIS_CLUSTER_MAXMEMORY="${FLASHSALE_REDIS_CLUSTER_MAXMEMORY:-1gb}"
# Kafka cluster: 3 brokers on base..base+2, their controllers on base+3..base+5.
KAFKA_CLUSTER_BASE_PORT="${FLASHSALE_KAFKA_CLUSTER_BASE_PORT:-9192}"

PG_DB=flashsale
PG_USER=flashsale
PG_PASSWORD=flashsale
ES_OS_USER="${FLASHSALE_ES_USER:-flashsale-es}"
PG_OS_USER="${FLASHSALE_PG_USER:-postgres}"

KAFKA_HEAP="${FLASHSALE_KAFKA_HEAP:-512m}"
ES_HEAP="${FLASHSALE_ES_HEAP:-1g}"
KAFKA_CLUSTER_HEAP="${FLASHSALE_KAFKA_CLUSTER_HEAP:-320m}"

ALL_SERVERS=(redis postgres kafka elasticsearch)
RUN_DIR="$STACK_DIR/run"
LOG_DIR="$STACK_DIR/logs"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
ES_DIST="$CACHE_DIR/elasticsearch-$ES_VERSION"
K6_BIN="$CACHE_DIR/k6-$K6_VERSION/k6"

IS_ROOT=0
[[ "$(id -u)" == 0 ]] && IS_ROOT=1

# The parts: helpers and probes, how each server starts, and the Redis Cluster.
# shellcheck source=scripts/stack/lib.sh
source "$REPO_ROOT/scripts/stack/lib.sh"
# shellcheck source=scripts/stack/servers.sh
source "$REPO_ROOT/scripts/stack/servers.sh"
# shellcheck source=scripts/stack/redis-cluster.sh
source "$REPO_ROOT/scripts/stack/redis-cluster.sh"
# shellcheck source=scripts/stack/kafka-cluster.sh
source "$REPO_ROOT/scripts/stack/kafka-cluster.sh"

# ---------------------------------------------------------------- up / down / status

# ensure <name>: leave a running server alone, else start ours; wait until it answers.
ensure() {
  local name="$1" pid port budget
  [[ "$name" == redis-cluster ]] && { ensure_redis_cluster; return; }
  [[ "$name" == kafka-cluster ]] && { ensure_kafka_cluster; return; }
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
  [[ "$name" == kafka-cluster ]] && { stop_kafka_cluster; return; }
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
    pid_running "$pid" || break
    sleep 0.1
  done
  if pid_running "$pid"; then
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
  [[ "$name" == kafka-cluster ]] && { status_kafka_cluster; return; }
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
      kafka | elasticsearch | kafka-cluster) (ensure "$n" >"$out/$n.out") & jobs[$n]=$! ;;
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
  (($# == 0)) && names=(redis-cluster "${names[@]}" kafka-cluster prometheus)
  lock_stack
  # Reverse order: search and Kafka first, the stores last.
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do stop_one "${names[$i]}"; done
}

cmd_status() {
  local names n
  mapfile -t names < <(names_or_all "$@")
  for n in "${names[@]}"; do status_one "$n"; done
  (($# == 0)) && status_one redis-cluster && status_one kafka-cluster && status_one prometheus
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
    elif [[ "$n" == kafka-cluster ]]; then
      for p in "${KAFKA_CLUSTER_NODES[@]}"; do [[ -f "$(log_file_of "kafka-cluster-$p")" ]] && files+=("$(log_file_of "kafka-cluster-$p")"); done
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
  say "# $(endpoint_of kafka-cluster)   (bash scripts/stack.sh up kafka-cluster; env kafka-cluster)"
}

cmd_kafka_topics() {
  install_kafka
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" "$@"
}

# The KRaft quorum of the three-broker cluster: `describe --status` names the active controller (LeaderId).
cmd_kafka_quorum() {
  install_kafka
  kafka_tool org.apache.kafka.tools.MetadataQuorumCommand --bootstrap-server "$(kc_bootstrap)" "$@"
}

# Transactions on the three-broker cluster: `list` (state per transactional id), `find-hanging --broker-id n`
# (data of a transaction its coordinator does not know, which holds back read_committed consumers).
cmd_kafka_transactions() {
  install_kafka
  kafka_tool org.apache.kafka.tools.TransactionsCommand --bootstrap-server "$(kc_bootstrap)" "$@"
}

cmd_k6() {
  install_k6 || die "k6 is not available"
  exec "$K6_BIN" "$@"
}

usage() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "${BASH_SOURCE[0]}"
}

main() {
  local cmd="${1:-}" n
  (($#)) && shift
  # Names are checked here, in this shell: the commands resolve them inside $( ) or < <( ), where
  # canonical's `die` only ends that subshell, and an unknown name used to print "unknown server"
  # and exit 0.
  case "$cmd" in
    up | down | stop | restart | status | logs | env) for n in "$@"; do canonical "$n" >/dev/null; done ;;
  esac
  case "$cmd" in
    up) cmd_up "$@" ;;
    down | stop) cmd_down "$@" ;;
    restart) cmd_down "$@"; cmd_up "$@" ;;
    status) cmd_status "$@" ;;
    logs) cmd_logs "$@" ;;
    env) cmd_env "$@" ;;
    k6) cmd_k6 "$@" ;;
    kafka-topics) cmd_kafka_topics "$@" ;;
    kafka-quorum) cmd_kafka_quorum "$@" ;;
    kafka-transactions) cmd_kafka_transactions "$@" ;;
    -h | --help | help | "") usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

# Sourcing this file (scripts/up.sh does) gives its functions without running a command.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
