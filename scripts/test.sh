#!/usr/bin/env bash
# THE test command (README: `bun run test`, CI: .ci/run). From a fresh clone with nothing running,
# or with the stack already up:
#   1. Bun 1.4.5 (installed with npm into ~/.bun if there is no bun at all),
#   2. bun install --frozen-lockfile,
#   3. the real servers: bash scripts/stack.sh up (idempotent; servers already running are reused),
#   4. bun run migrate,
#   5. bun run typecheck,
#   6. bun test [your args...]   e.g. bun run test test/stack.test.ts
# Exits non-zero if the typecheck or any test failed (the tests run even when the typecheck fails,
# so one run shows both).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
BUN_VERSION=1.4.5
CACHE_DIR="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flash-sale}"

step() { printf '\n== %s\n' "$*"; }

# ---- 1. Bun
export PATH="$HOME/.bun/bin:$PATH"
install_bun() { # install_bun <prefix>
  command -v npm >/dev/null || {
    echo "Bun $BUN_VERSION is needed. Install it with npm (apt-get install npm) or see https://bun.sh/docs/installation" >&2
    exit 1
  }
  echo "installing Bun $BUN_VERSION with npm into $1 ..."
  npm install -g --prefix "$1" --no-fund --no-audit "bun@$BUN_VERSION" >/dev/null
}
if ! command -v bun >/dev/null; then
  install_bun "$HOME/.bun"
elif [[ "$(bun --version)" != "$BUN_VERSION" ]]; then
  # Somebody's own Bun of another version: leave it alone, use the pinned one from the cache dir.
  [[ -x "$CACHE_DIR/bun-$BUN_VERSION/bin/bun" ]] || install_bun "$CACHE_DIR/bun-$BUN_VERSION"
  export PATH="$CACHE_DIR/bun-$BUN_VERSION/bin:$PATH"
fi
[[ "$(bun --version)" == "$BUN_VERSION" ]] || { echo "expected Bun $BUN_VERSION, got $(bun --version) at $(command -v bun)" >&2; exit 1; }
echo "bun $(bun --version) at $(command -v bun)"

# ---- 2. dependencies
step "bun install --frozen-lockfile"
bun install --frozen-lockfile

# ---- 3. servers
step "stack up"
bash scripts/stack.sh up

# ---- 4. schema
step "migrate"
bun run migrate

# ---- 5. types
step "typecheck"
typecheck=0
bun run typecheck || typecheck=$?

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
if ((typecheck != 0)); then echo "typecheck FAILED (exit $typecheck)"; fi
if ((tests != 0)); then echo "tests FAILED (exit $tests)"; fi
if ((typecheck != 0 || tests != 0)); then exit 1; fi
echo "typecheck and tests passed"
