#!/usr/bin/env bash
# The whole system on one command, without Docker (docs/stack.md "The whole system"):
#   bash scripts/up.sh  (= bun run up, once Bun is there; up.sh installs it on a bare machine)
#   bun run up      = bash scripts/up.sh up      stack up, migrate, start every service under a supervisor
#                                                (restarted on failure), wait until every /readyz answers
#                                                200, print one table; exit 1 naming any service not ready
#   bun run down    = bash scripts/up.sh down    stop those services, then the stack
#   bash scripts/up.sh status                    servers and services (pid, port, ready, restarts); exit 1
#                                                when a service is down or not ready
#   bash scripts/up.sh restart [service...]      restart services (e.g. after a code change)
#   bash scripts/up.sh stop [service...]         stop services only, leave the stack running
#   bash scripts/up.sh reset [--yes]             stop everything and delete every store's data (asks first)
# Services get the environment of docs/design.md §10; anything you export (LOG_LEVEL, OUTBOX_SHARDS, …)
# wins over the development defaults below. ADMIN_TOKEN and JWT_SECRET default to fixed
# development values: never use them anywhere else. Ports: PORT (the api, 3000) and
# FLASHSALE_ADMIN_PORT_OFFSET (added to every admin port of shared/services.ts, 0) move the services,
# FLASHSALE_*_PORT and FLASHSALE_STACK_DIR the servers (scripts/stack.sh); FLASHSALE_UP_TIMEOUT
# (seconds, 180) bounds the wait for readiness.
set -euo pipefail

# shellcheck source=scripts/stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"

install_bun # a bare machine has none; everything below may use it
# The binaries, their admin ports and runtime flags: the one registry, shared/services.ts.
eval "$(cd "$REPO_ROOT" && bun shared/services.ts shell)"
export ADMIN_TOKEN="${ADMIN_TOKEN:-dev-admin-token-0123456789}"
export JWT_SECRET="${JWT_SECRET:-dev-jwt-secret-0123456789abcdef0123456789abcdef}"
export REDIS_URL="${REDIS_URL:-redis://$HOST:$REDIS_PORT}"
export DATABASE_URL="${DATABASE_URL:-postgres://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-$HOST:$KAFKA_PORT}"
export ELASTICSEARCH_URL="${ELASTICSEARCH_URL:-http://$HOST:$ES_PORT}"
export WEBHOOK_ALLOW_PRIVATE_NETWORKS="${WEBHOOK_ALLOW_PRIVATE_NETWORKS:-true}" # dev stack: local webhook receivers allowed (docs/webhooks.md, SSRF)
ADMIN_PORT_OFFSET="${FLASHSALE_ADMIN_PORT_OFFSET:-0}"
[[ "$ADMIN_PORT_OFFSET" =~ ^[0-9]+$ ]] || die "FLASHSALE_ADMIN_PORT_OFFSET must be a whole number (got '$ADMIN_PORT_OFFSET')"
API_PORT="${PORT:-3000}"
# The api's operators' port (/metrics, /healthz, /readyz): metrics stay off the public port.
API_ADMIN_PORT="${API_ADMIN_PORT:-$((SERVICE_ADMIN_PORT[api] + ADMIN_PORT_OFFSET))}"
# API_WORKERS api processes share the public port (SO_REUSEPORT), one per core unless set; worker i's
# admin port is API_ADMIN_PORT + i × API_WORKER_ADMIN_PORT_STEP (shared/services.ts, docs/design.md §12).
API_WORKERS="${API_WORKERS:-$(nproc)}"
UP_TIMEOUT="${FLASHSALE_UP_TIMEOUT:-180}"
SUPERVISE="$REPO_ROOT/scripts/stack/supervise.sh"

admin_port_of() {
  if [[ "$1" == api ]]; then echo "$API_ADMIN_PORT"; else echo $((${SERVICE_ADMIN_PORT[$1]:?unknown service $1} + ADMIN_PORT_OFFSET)); fi
}
# Every port a service answers /readyz on: the api's public port and each api worker's admin port.
ready_ports_of() {
  local i
  if [[ "$1" == api ]]; then
    echo "$API_PORT"
    for ((i = 0; i < API_WORKERS; i++)); do echo $((API_ADMIN_PORT + i * API_WORKER_ADMIN_PORT_STEP)); done
  else
    admin_port_of "$1"
  fi
}
ports_label() { local p; p="$(ready_ports_of "$1" | paste -sd' ')"; [[ "$1" == api ]] && p="${p/ /, admin }"; echo "$p"; }

existing_services() {
  local s
  for s in "${SERVICES[@]}"; do [[ -f "$REPO_ROOT/services/$s/main.ts" ]] && echo "$s"; done
  return 0
}
known_service() { local s; for s in "${SERVICES[@]}"; do [[ "$s" == "$1" ]] && return 0; done; return 1; }

find_bun() {
  command -v bun 2>/dev/null || die "bun is not on PATH (bash scripts/install.sh bun installs the pinned one)"
}

svc_id() { echo "svc-$1"; } # pid files under the stack's run dir: the supervisor's, and .child (the service)
svc_log() { echo "$LOG_DIR/$1.log"; }
restarts_of() { cat "$RUN_DIR/svc-$1.restarts" 2>/dev/null || echo 0; }
supervisor_pid() { owned_pid "$(svc_id "$1")"; }
service_pid() { owned_pid "$(svc_id "$1").child"; }

# ready <name>: every /readyz of it answers 200. Otherwise prints why not (the first reason found).
ready() {
  local port body code
  for port in $(ready_ports_of "$1"); do
    body="$(curl -sS -m 2 -w '\n%{http_code}' "http://$HOST:$port/readyz" 2>/dev/null || true)"
    code="${body##*$'\n'}"
    [[ "$code" == 200 ]] && continue
    body="${body%$'\n'*}"
    if [[ "$body" =~ \"reason\":\"([^\"]*)\" ]]; then echo ":$port ${BASH_REMATCH[1]}"; else echo ":$port not answering"; fi
    return 1
  done
}

# state <name>: "ready", "not ready: <why>", "restarting" (between two runs), or "stopped".
state_of() {
  local why
  if ! supervisor_pid "$1" >/dev/null; then
    echo stopped
  elif ! service_pid "$1" >/dev/null; then
    echo restarting
  elif why="$(ready "$1")"; then
    echo ready
  else
    echo "not ready ($why)"
  fi
}

start_service() {
  local name="$1" port bun pid i
  if pid="$(supervisor_pid "$name")"; then
    say "$name: already supervised (pid $pid)"
    return 0
  fi
  for port in $(ready_ports_of "$name"); do
    if port_open "$port"; then
      say "$name: port $port is taken by a process this script did not start; not starting $name" >&2
      return 1
    fi
  done
  bun="$(find_bun)"
  local env_port=(ADMIN_PORT="$(admin_port_of "$name")") flags=()
  read -r -a flags <<<"${SERVICE_RUNTIME_FLAGS[$name]}"
  [[ "$name" == api ]] && env_port=(PORT="$API_PORT" ADMIN_PORT="$API_ADMIN_PORT" API_WORKERS="$API_WORKERS")
  rm -f "$(pid_file "$(svc_id "$name")")" "$(pid_file "$(svc_id "$name").child")" "$RUN_DIR/svc-$name.restarts"
  (
    cd "$REPO_ROOT"
    env "${env_port[@]}" setsid bash "$SUPERVISE" "$name" "$RUN_DIR" "$(svc_log "$name")" \
      "$bun" "${flags[@]}" "services/$name/main.ts" </dev/null >>"$(svc_log "$name")" 2>&1 9>&- &
  )
  for ((i = 0; i < 50; i++)); do supervisor_pid "$name" >/dev/null && return 0; sleep 0.1; done
  info "$name: its supervisor did not start; last lines of $(svc_log "$name"):"
  tail -n 20 "$(svc_log "$name")" >&2
  return 1
}

stop_service() {
  local name="$1" sup="" pid="" i
  sup="$(supervisor_pid "$name" || true)"
  pid="$(service_pid "$name" || true)"
  if [[ -z "$sup" && -z "$pid" ]]; then
    rm -f "$(pid_file "$(svc_id "$name")")" "$(pid_file "$(svc_id "$name").child")"
    return 0
  fi
  # The supervisor passes SIGTERM on and does not restart what it stops; a service without one (its
  # supervisor was killed) is signalled itself. Services drain on SIGTERM with a 20 s deadline of their own.
  kill -TERM "${sup:-$pid}" 2>/dev/null || true
  for ((i = 0; i < 250; i++)); do
    { [[ -n "$sup" ]] && pid_running "$sup"; } || { [[ -n "$pid" ]] && pid_running "$pid"; } || break
    sleep 0.1
  done
  for i in $pid $sup; do
    if pid_running "$i"; then
      info "$name (pid $i) still running after 25 s; SIGKILL"
      kill -KILL "$i" 2>/dev/null || true
    fi
  done
  rm -f "$(pid_file "$(svc_id "$name")")" "$(pid_file "$(svc_id "$name").child")"
  say "$name: stopped (pid ${pid:-$sup})"
}

services_or_all() {
  local n
  if (($# == 0)); then existing_services; return; fi
  for n in "$@"; do known_service "$n" || die "unknown service '$n' (known: ${SERVICES[*]})"; done
  printf '%s\n' "$@"
}

# One line per service: name, pid, ports, readiness, restarts. Returns 1 when one is not ready.
service_table() {
  local n pid state all=0
  printf '%-20s %-8s %-28s %-9s %s\n' SERVICE PID PORT READY RESTARTS
  for n in "$@"; do
    state="$(state_of "$n")"
    pid="$(service_pid "$n" || echo -)"
    printf '%-20s %-8s %-28s %-9s %s\n' "$n" "$pid" "$(ports_label "$n")" "$([[ "$state" == ready ]] && echo yes || echo no)" "$(restarts_of "$n")"
    [[ "$state" == ready ]] || all=1
  done
  for n in "$@"; do
    state="$(state_of "$n")"
    [[ "$state" == ready ]] || say "  $n: $state"
  done
  return "$all"
}

# wait_ready <seconds> <name...>: until every one is ready or the time is up.
wait_ready_all() {
  local budget="$1" start=$SECONDS n pending
  shift
  while :; do
    pending=0
    for n in "$@"; do [[ "$(state_of "$n")" == ready ]] || { pending=1; break; }; done
    ((pending)) || return 0
    ((SECONDS - start < budget)) || return 1
    sleep 0.5
  done
}

# The shells that start the services export the worker metrics URLs for the api's dashboard, so an
# offset moves them too.
export_worker_metrics_urls() {
  local n urls=()
  [[ -n "${WORKER_METRICS_URLS:-}" ]] && return
  for n in "${SERVICES[@]}"; do [[ "$n" == api ]] || urls+=("http://$HOST:$(admin_port_of "$n")/metrics"); done
  WORKER_METRICS_URLS="$(IFS=,; echo "${urls[*]}")"
  export WORKER_METRICS_URLS
}

start_and_wait() { # start_and_wait <name...>: start (supervised), wait for readiness, print the table
  local n failed=()
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  export_worker_metrics_urls
  for n in "$@"; do start_service "$n" || failed+=("$n"); done
  wait_ready_all "$UP_TIMEOUT" "$@" || true
  echo
  if service_table "$@" && ((${#failed[@]} == 0)); then return 0; fi
  for n in "$@"; do
    [[ "$(state_of "$n")" == ready ]] && continue
    failed+=("$n")
    info "$n is not ready after ${UP_TIMEOUT}s; last lines of $(svc_log "$n"):"
    tail -n 15 "$(svc_log "$n")" >&2 || true
  done
  mapfile -t failed < <(printf '%s\n' "${failed[@]}" | awk '!seen[$0]++')
  info "not ready: ${failed[*]}. Their supervisors keep restarting what exits; bash scripts/up.sh status shows them, bash scripts/up.sh down stops everything."
  return 1
}

system_up() {
  local t0=$SECONDS names
  (cd "$REPO_ROOT" && bun install --frozen-lockfile >/dev/null)
  bash "$REPO_ROOT/scripts/stack.sh" up
  (cd "$REPO_ROOT" && "$(find_bun)" scripts/migrate.ts)
  mapfile -t names < <(existing_services)
  ((${#names[@]})) || { say "no services/<name>/main.ts yet: only the stack is up"; return 0; }
  start_and_wait "${names[@]}" || die "flash-sale is NOT up after $((SECONDS - t0))s (see above)"
  cat <<EOF

flash-sale is up in $((SECONDS - t0))s: every /readyz answers 200
  api            http://$HOST:$API_PORT   (/docs, /openapi.json, /healthz, /readyz)  admin :$API_ADMIN_PORT (/metrics /healthz /readyz; /dashboard with the admin token)
  admin token    Authorization: Bearer $ADMIN_TOKEN
  user token     JWT_SECRET=$JWT_SECRET bun run token <userId>
  logs           $LOG_DIR/<service>.log
  status / stop  bash scripts/up.sh status  /  bun run down
EOF
}

system_stop_services() {
  local i
  # Producers of work first (api, expirer), then the pipeline in shared/services.ts' order (relay, one
  # projector per read model, notifier), so the relay and projectors drain.
  for i in api expirer; do stop_service "$i"; done
  for i in "${SERVICES[@]}"; do [[ "$i" == api || "$i" == expirer ]] || stop_service "$i"; done
}

system_status() {
  local names rc=0
  bash "$REPO_ROOT/scripts/stack.sh" status || true
  echo
  mapfile -t names < <(existing_services)
  service_table "${names[@]}" || rc=1
  return "$rc"
}

# reset [--yes]: stop every service and server of this stack and delete every store's data, so that
# the next `up` is a first start. Servers on the ports that this stack did not start are left alone,
# and then the reset says it is not complete.
system_reset() {
  local yes=0 answer d kept=()
  [[ "${1:-}" == --yes || "${1:-}" == -y ]] && yes=1
  if ((!yes)); then
    [[ -t 0 ]] || die "reset deletes every store's data in $STACK_DIR; not on a terminal, so it does not ask: pass --yes"
    read -r -p "Stop everything and delete all data in $STACK_DIR (Redis, PostgreSQL, Kafka, Elasticsearch, the Redis and Kafka clusters, Prometheus)? [y/N] " answer
    [[ "$answer" =~ ^[Yy]([Ee][Ss])?$ ]] || { say "nothing done"; return 1; }
  fi
  system_stop_services
  bash "$REPO_ROOT/scripts/stack.sh" down
  for d in redis postgres kafka elasticsearch prometheus; do port_open "$(port_of "$d")" && kept+=("$d on $HOST:$(port_of "$d")"); done
  for d in "${REDIS_CLUSTER_PORTS[@]}"; do port_open "$d" && kept+=("redis-cluster on $HOST:$d"); done
  for d in "${KAFKA_CLUSTER_NODES[@]}"; do port_open "$(kc_port "$d")" && kept+=("kafka-cluster on $HOST:$(kc_port "$d")"); done
  # Only the stack's own subdirectories: FLASHSALE_STACK_DIR may point anywhere.
  for d in redis postgres kafka elasticsearch redis-cluster kafka-cluster prometheus logs run; do rm -rf "${STACK_DIR:?}/$d"; done
  rm -rf "$(pg_socket_dir)"
  if ((${#kept[@]})); then
    die "reset incomplete: still answering, not started by this stack, so their data is not touched: ${kept[*]}"
  fi
  say "reset: everything stopped, all data in $STACK_DIR deleted; the next bash scripts/up.sh is a first start"
}

cmd="${1:-up}"
(($#)) && shift
case "$cmd" in
  up) system_up ;;
  down)
    system_stop_services
    bash "$REPO_ROOT/scripts/stack.sh" down
    ;;
  status) system_status ;;
  reset) system_reset "$@" ;;
  stop)
    mapfile -t names < <(services_or_all "$@")
    ((${#names[@]})) || exit 1
    for n in "${names[@]}"; do stop_service "$n"; done
    ;;
  restart)
    mapfile -t names < <(services_or_all "$@")
    ((${#names[@]})) || exit 1
    for n in "${names[@]}"; do stop_service "$n"; done
    start_and_wait "${names[@]}"
    ;;
  *) echo "usage: bash scripts/up.sh [up|down|status|stop [service...]|restart [service...]|reset [--yes]]" >&2; exit 2 ;;
esac
