#!/usr/bin/env bash
# The whole system on one command, without Docker:
#   bash scripts/up.sh  (= bun run up, once Bun is there; up.sh installs it on a bare machine)
#   bun run up      = bash scripts/up.sh up      stack up, migrate, start every service whose
#                                                services/<name>/main.ts exists (background, logs in
#                                                the stack dir), wait for their /healthz, print URLs
#   bun run down    = bash scripts/up.sh down    stop those services, then the stack
#   bash scripts/up.sh status                    what runs
#   bash scripts/up.sh restart [service...]      restart services (e.g. after a code change)
#   bash scripts/up.sh stop [service...]         stop services only, leave the stack running
# Services get the environment of docs/design.md §10; anything you export (LOG_LEVEL, OUTBOX_SHARDS, …)
# wins over the development defaults below. ADMIN_TOKEN and JWT_SECRET default to fixed
# development values: never use them anywhere else.
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
API_PORT="${PORT:-3000}"
# The api's operators' port (/metrics, /healthz, /readyz): metrics stay off the public port.
API_ADMIN_PORT="${API_ADMIN_PORT:-${SERVICE_ADMIN_PORT[api]}}"

admin_port_of() {
  if [[ "$1" == api ]]; then echo "$API_PORT"; else echo "${SERVICE_ADMIN_PORT[$1]:?unknown service $1}"; fi
}

existing_services() {
  local s
  for s in "${SERVICES[@]}"; do [[ -f "$REPO_ROOT/services/$s/main.ts" ]] && echo "$s"; done
  return 0
}

find_bun() {
  command -v bun 2>/dev/null || die "bun is not on PATH (bash scripts/install.sh bun installs the pinned one)"
}

svc_id() { echo "svc-$1"; } # pid file name under the stack's run dir
svc_log() { echo "$LOG_DIR/$1.log"; }

healthy() { curl -fsS -m 2 "http://$HOST:$1/healthz" >/dev/null 2>&1; }

start_service() {
  local name="$1" port pid bun
  port="$(admin_port_of "$name")"
  if pid="$(owned_pid "$(svc_id "$name")")"; then
    say "$name: running (pid $pid)  http://$HOST:$port"
    return 0
  fi
  if port_open "$port"; then
    say "$name: port $port is taken by a process this script did not start; not starting $name" >&2
    return 1
  fi
  bun="$(find_bun)"
  local env_port=(ADMIN_PORT="$port") flags=()
  read -r -a flags <<<"${SERVICE_RUNTIME_FLAGS[$name]}"
  # API_WORKERS api processes share the port (SO_REUSEPORT), one per core unless set; worker i's
  # admin port is API_ADMIN_PORT + i × API_WORKER_ADMIN_PORT_STEP (shared/services.ts, docs/design.md §12).
  [[ "$name" == api ]] && env_port=(PORT="$port" ADMIN_PORT="$API_ADMIN_PORT" API_WORKERS="${API_WORKERS:-$(nproc)}")
  echo "---- $(date -u +%FT%TZ) start" >>"$(svc_log "$name")"
  (
    cd "$REPO_ROOT"
    env "${env_port[@]}" setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$RUN_DIR/$(svc_id "$name").raw" \
      "$bun" "${flags[@]}" "services/$name/main.ts" </dev/null >>"$(svc_log "$name")" 2>&1 9>&- &
  )
  local i
  for i in $(seq 1 50); do [[ -s "$RUN_DIR/$(svc_id "$name").raw" ]] && break; sleep 0.1; done
  pid="$(tr -dc '0-9' <"$RUN_DIR/$(svc_id "$name").raw")"
  rm -f "$RUN_DIR/$(svc_id "$name").raw"
  record_pid "$(svc_id "$name")" "$pid"
  for i in $(seq 1 300); do
    if healthy "$port"; then
      say "$name: started (pid $pid)  http://$HOST:$port  (log: $(svc_log "$name"))"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  info "$name did not become healthy on :$port; last lines of $(svc_log "$name"):"
  tail -n 20 "$(svc_log "$name")" >&2
  return 1
}

stop_service() {
  local name="$1" pid i
  if ! pid="$(owned_pid "$(svc_id "$name")")"; then
    rm -f "$(pid_file "$(svc_id "$name")")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  # The services drain on SIGTERM (finish the batch, commit) with a 20 s deadline of their own.
  for ((i = 0; i < 250; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    info "$name (pid $pid) still running after 25 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file "$(svc_id "$name")")"
  say "$name: stopped (pid $pid)"
}

services_or_all() {
  if (($# == 0)); then existing_services; else printf '%s\n' "$@"; fi
}

system_up() {
  local t0=$SECONDS names n failed=()
  (cd "$REPO_ROOT" && bun install --frozen-lockfile >/dev/null)
  bash "$REPO_ROOT/scripts/stack.sh" up
  (cd "$REPO_ROOT" && "$(find_bun)" scripts/migrate.ts)
  mapfile -t names < <(existing_services)
  ((${#names[@]})) || { say "no services/<name>/main.ts yet: only the stack is up"; return 0; }
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  local started=()
  for n in "${names[@]}"; do
    if owned_pid "$(svc_id "$n")" >/dev/null; then continue; fi
    if start_service "$n"; then started+=("$n"); else failed+=("$n"); break; fi
  done
  if ((${#failed[@]})); then
    # A failed up leaves no orphans: the services this run started are stopped again. The stack's
    # servers are healthy (stack.sh up succeeded) and stay, so a retry is fast; `bun run down` stops them.
    for n in "${started[@]}"; do stop_service "$n"; done
    die "not started: ${failed[*]} (log: $(svc_log "${failed[0]}")); the servers stay up, bash scripts/up.sh down stops them"
  fi
  cat <<EOF

flash-sale is up in $((SECONDS - t0))s
  api            http://$HOST:$API_PORT   (/docs, /openapi.json, /healthz, /readyz)  admin :$API_ADMIN_PORT (/metrics /healthz /readyz)
  workers        relay :9101  expirer :9102  projector-postgres :9103  projector-search :9104  notifier :9106  (/healthz /readyz /metrics)
  admin token    Authorization: Bearer $ADMIN_TOKEN
  user token     JWT_SECRET=$JWT_SECRET bun run token <userId>
  logs           $LOG_DIR/<service>.log
  stop           bun run down
EOF
}

system_down() {
  local names i
  mapfile -t names < <(printf '%s\n' "${SERVICES[@]}")
  # Producers of work first (api, expirer), then the pipeline, so the relay and projectors drain.
  for i in api expirer relay projector-postgres projector-search notifier; do stop_service "$i"; done
  bash "$REPO_ROOT/scripts/stack.sh" down
}

system_status() {
  local n pid port
  bash "$REPO_ROOT/scripts/stack.sh" status
  for n in "${SERVICES[@]}"; do
    port="$(admin_port_of "$n")"
    if pid="$(owned_pid "$(svc_id "$n")")"; then
      if healthy "$port"; then say "$n: running (pid $pid)  http://$HOST:$port"; else say "$n: running (pid $pid), /healthz not answering on :$port"; fi
    elif [[ -f "$REPO_ROOT/services/$n/main.ts" ]]; then
      say "$n: stopped"
    fi
  done
}

case "${1:-up}" in
  up) system_up ;;
  down) system_down ;;
  status) system_status ;;
  stop)
    shift
    mapfile -t names < <(services_or_all "$@")
    for n in "${names[@]}"; do stop_service "$n"; done
    ;;
  restart)
    shift
    mapfile -t names < <(services_or_all "$@")
    for n in "${names[@]}"; do stop_service "$n"; done
    for n in "${names[@]}"; do start_service "$n"; done
    ;;
  *) echo "usage: bash scripts/up.sh [up|down|status|stop [service...]|restart [service...]]" >&2; exit 2 ;;
esac
