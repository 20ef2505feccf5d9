#!/usr/bin/env bash
# One service of scripts/up.sh under supervision, like systemd's Restart=on-failure (started by up.sh
# under setsid, never run by hand):
#   supervise.sh <name> <run dir> <log file> <command...>
# - runs <command> with its output appended to <log file>, and records both pids the way the stack
#   does (run/svc-<name>.pid is this supervisor, run/svc-<name>.child.pid the service: "<pid> <start>");
# - an exit with a non-zero status or by a signal (kill -9, a crash) is a failure: the service is
#   started again after a backoff of 1, 2, 4 … 30 s (back to 1 s once a run lasted 10 s), and
#   run/svc-<name>.restarts counts the restarts since up/restart started the service;
# - an exit with status 0 is a deliberate stop (a service drains and exits 0 on SIGTERM), so it is
#   not restarted, as with Restart=on-failure;
# - SIGTERM/SIGINT to this supervisor (what `up.sh stop/down/restart/reset` send) is passed on to the
#   service, whose exit is then awaited and never answered with a restart.
set -uo pipefail

name="$1" RUN_DIR="$2" log="$3"
shift 3
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # record_pid, pid_file

MAX_BACKOFF=30
STABLE_AFTER=10 # seconds of running after which the next failure restarts after 1 s again

child=0 sleeper=0 stopping=0 restarts=0 backoff=1
note() { printf -- '---- %s supervisor: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"; }
on_stop() {
  stopping=1
  ((child)) && kill -TERM "$child" 2>/dev/null
  ((sleeper)) && kill -TERM "$sleeper" 2>/dev/null
}
trap on_stop TERM INT
trap '' HUP

echo 0 >"$RUN_DIR/svc-$name.restarts"
record_pid "svc-$name" $$

while :; do
  if ((restarts)); then note "restart $restarts: $*"; else note "start: $*"; fi
  "$@" </dev/null >>"$log" 2>&1 &
  child=$!
  record_pid "svc-$name.child" "$child" || true
  ((stopping)) && kill -TERM "$child" 2>/dev/null # a stop that came before $! was known
  started=$SECONDS
  # `wait` returns early when a trapped signal arrives; wait again until the service itself is gone.
  while :; do
    wait "$child"
    code=$?
    kill -0 "$child" 2>/dev/null || break
  done
  child=0
  rm -f "$(pid_file "svc-$name.child")"
  if ((stopping)); then
    note "stopped (exit $code)"
    exit 0
  fi
  if ((code == 0)); then
    note "exited 0 on its own: a deliberate stop, not restarted (Restart=on-failure)"
    exit 0
  fi
  ((SECONDS - started >= STABLE_AFTER)) && backoff=1
  restarts=$((restarts + 1))
  echo "$restarts" >"$RUN_DIR/svc-$name.restarts"
  if ((code > 128)); then why="killed by signal $((code - 128))"; else why="exit $code"; fi
  note "$name failed ($why) after $((SECONDS - started))s; restart $restarts in ${backoff}s"
  sleep "$backoff" &
  sleeper=$!
  wait "$sleeper" 2>/dev/null
  sleeper=0
  ((stopping)) && { note "stopped while waiting to restart"; exit 0; }
  backoff=$((backoff * 2 > MAX_BACKOFF ? MAX_BACKOFF : backoff * 2))
done
