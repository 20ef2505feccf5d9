#!/usr/bin/env bash
# THE test command (README: `bun run test`, CI: .ci/run). From a fresh clone with nothing running,
# or with the stack already up:
#   1. whatever a bare machine lacks (scripts/install.sh: Bun, Debian packages, schemathesis venv),
#   2. bun install --frozen-lockfile,
#   3. the real servers: bash scripts/stack.sh up, and the Redis Cluster (stack.sh up redis-cluster)
#      that the cluster tests run on (idempotent; servers already running are reused),
#   4. bun run migrate,
#   5. bun run lint (scripts/lint.sh: layer rules, dead code, types, the served OpenAPI document),
#   6. bun test [your args...]   e.g. bun run test test/stack.test.ts
# Exits non-zero if the lint or any test failed (the tests run even when the lint fails, so one run
# shows both).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

step() { printf '\n== %s\n' "$*"; }

# ---- 1. what a bare machine lacks (scripts/install.sh says what it installs): Bun (pinned),
# redis-server, PostgreSQL, Chromium (browser tests), Prometheus (promtool), schemathesis (venv)
# shellcheck source=scripts/install.sh
source "$REPO_ROOT/scripts/install.sh"
step "install what is missing"
install_main all
echo "bun $(bun --version) at $(command -v bun)"

# ---- 2. dependencies
step "bun install --frozen-lockfile"
bun install --frozen-lockfile

# ---- 3. servers
step "stack up"
bash scripts/stack.sh up
# Not in the default set (six more processes most users do not need); the cluster tests need it.
bash scripts/stack.sh up redis-cluster

# ---- 4. schema
step "migrate"
bun run migrate

# ---- 5. lint: layers, dead code, types, contract (it names what failed)
step "lint"
lint=0
bun run lint || lint=$?

# ---- 6. tests
# Bun 1.4.5 ignores `timeout` in bunfig.toml's [test] (checked: a 6 s test fails at the 5 s default),
# so the per-test budget is given on the command line unless you pass your own --timeout.
timeout_arg=(--timeout 60000)
for a in "$@"; do [[ "$a" == --timeout* ]] && timeout_arg=(); done
step "bun test ${timeout_arg[*]} $*"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
set +e
bun test "${timeout_arg[@]}" "$@" 2>&1 | tee "$report"
tests=${PIPESTATUS[0]}
set -e

# One plain closing line that any CI reader understands, from bun's own summary.
passed="$(grep -Eo '^ *[0-9]+ pass$' "$report" | tail -1 | grep -Eo '[0-9]+' || echo 0)"
failed="$(grep -Eo '^ *[0-9]+ fail$' "$report" | tail -1 | grep -Eo '[0-9]+' || echo 0)"
echo
echo "tests: $passed passed, $failed failed"
if ((lint != 0)); then echo "lint FAILED (exit $lint): see the 'lint FAILED:' line above for which check"; fi
if ((tests != 0)); then echo "tests FAILED (exit $tests)"; fi
if ((lint != 0 || tests != 0)); then exit 1; fi
echo "lint and tests passed"
