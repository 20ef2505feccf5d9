#!/usr/bin/env bash
# `bun run lint`: what must hold before any test runs, each check run even when an earlier one failed
# (one run shows every failure), then one line naming the ones that failed. scripts/test.sh runs it.
#   layers    dependency-cruiser, the rules in .dependency-cruiser.cjs (who may import whom, no cycles)
#   dead code knip (knip.json): unused files, exports, dependencies
#   types     tsc --noEmit (strict, no unused locals)
#   contract  redocly lint (recommended rules, redocly.yaml) of the OpenAPI document the api serves
# dependency-cruiser and knip refuse Node 20 (the machine's node), so they and redocly run on Bun (`bun --bun`).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

failed=()
check() {
  local name="$1"
  shift
  printf '\n-- lint: %s\n' "$name"
  "$@" || failed+=("$name")
}

check layers bun --bun node_modules/.bin/depcruise services shared scripts loadtests test --config .dependency-cruiser.cjs
check "dead code" bun --bun node_modules/.bin/knip
check types node_modules/.bin/tsc --noEmit -p .
served_openapi() { # the document as the api serves it (services/api/openapi-document.ts), then redocly on it
  local doc
  doc="$(mktemp --suffix .json)"
  bun services/api/openapi-document.ts >"$doc" && bun --bun node_modules/.bin/redocly lint "$doc" --config redocly.yaml --format=stylish
  local code=$?
  rm -f "$doc"
  return $code
}
check contract served_openapi

echo
if ((${#failed[@]} > 0)); then
  echo "lint FAILED: ${failed[*]}"
  exit 1
fi
echo "lint passed: layers, dead code, types, contract"
