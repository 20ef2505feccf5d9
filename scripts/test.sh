#!/usr/bin/env bash
# THE test command (README: `bun run test`, CI: .ci/run). From a fresh clone with nothing running,
# or with the stack already up:
#   1. whatever a bare machine lacks (scripts/install.sh: Bun, Debian packages, schemathesis venv),
#   2. bun install --frozen-lockfile,
#   3. the unit tier, no servers: test/*.unit.test.ts (= bun run test:unit, seconds), so a broken
#      pure module shows before the servers start,
#   4. the real servers: bash scripts/stack.sh up, and the Redis Cluster (stack.sh up redis-cluster)
#      that the cluster tests run on (idempotent; servers already running are reused),
#   5. bun run migrate,
#   6. bun run lint (scripts/lint.sh: layer rules, dead code, types; it names the check that failed),
#   7. the integration tier: bun test on every other test file, against the real servers.
# With arguments, steps 3 and 7 are replaced by `bun test [your args...]`, e.g. bun run test test/stack.test.ts.
# Exits non-zero if the lint or any test failed (every step runs even when an earlier one failed,
# so one run shows everything).
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

# Bun 1.4.5 ignores `timeout` in bunfig.toml's [test] (checked: a 6 s test fails at the 5 s default),
# so the per-test budget is given on the command line unless you pass your own --timeout.
timeout_arg=(--timeout 60000)
for a in "$@"; do [[ "$a" == --timeout* ]] && timeout_arg=(); done
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
tests=0
run_tests() { # run_tests <bun test args...>: appends bun's output to the report, remembers a failure
  local code
  step "bun test $*"
  set +e
  bun test "$@" 2>&1 | tee -a "$report"
  code=${PIPESTATUS[0]}
  set -e
  ((code == 0)) || tests=$code
}

# ---- 3. the unit tier: pure modules, no servers
if (($# == 0)); then run_tests "${timeout_arg[@]}" .unit.test.ts; fi

# ---- 4. servers
step "stack up"
bash scripts/stack.sh up
# Not in the default set (six more processes most users do not need); the cluster tests need it.
bash scripts/stack.sh up redis-cluster

# ---- 5. schema
step "migrate"
bun run migrate

# ---- 6. lint: layers, dead code, types (scripts/lint.sh ends with a line naming what failed)
step "lint"
lint=0
bun run lint || lint=$?

# ---- 7. the integration tier (or what you asked for)
if (($# == 0)); then
  run_tests "${timeout_arg[@]}" --path-ignore-patterns='**/*.unit.test.ts'
else
  run_tests "${timeout_arg[@]}" "$@"
fi

# Each failed test again, at the end: its output and error (the lines between the test before it and
# its "(fail)" line, the last 80, long lines cut), so a CI log that keeps only its tail still says why.
failures() {
  awk '
    /^[0-9]+ tests? failed:$/ { recap = 1; next }   # bun repeats the (fail) lines in its closing recap
    /^ *[0-9]+ pass$/ { recap = 0; next }
    recap { next }
    /^test\/.*:$/ || /^\((pass|skip|todo)\)/ { n = 0; next }
    /^\(fail\)/ {
      printf "\n-- %s\n", $0
      for (i = (n > 80 ? n - 80 : 0); i < n; i++) print substr(buf[i % 80], 1, 400)
      n = 0; next
    }
    { buf[n % 80] = $0; n++ }
  ' "$report"
}
if grep -q '^(fail)' "$report"; then
  step "failed tests, each with the output before its (fail) line"
  failures
fi

# One plain closing line that any CI reader understands, from bun's own summaries (both tiers).
sum() { grep -Eo "^ *[0-9]+ $1\$" "$report" | grep -Eo '[0-9]+' | awk '{ n += $1 } END { print n + 0 }'; }
echo
echo "tests: $(sum pass) passed, $(sum fail) failed"
if ((lint != 0)); then echo "lint FAILED (exit $lint): the 'lint FAILED:' line above names the check"; fi
if ((tests != 0)); then echo "tests FAILED (exit $tests)"; fi
if ((lint != 0 || tests != 0)); then exit 1; fi
echo "lint and tests passed"
