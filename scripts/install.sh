#!/usr/bin/env bash
# Installs what flash-sale needs on a bare Debian 12 machine, and says what it installs. Idempotent:
# anything already present is left alone. Called by scripts/up.sh and scripts/test.sh (the README's
# two commands), so neither needs a hand-made step first; you can also run it yourself:
#
#   bash scripts/install.sh [all|bun|servers|k6|browser|prometheus|schemathesis]...   (default: all)
#
# What it installs, and from where (docs/stack.md has the same list):
#   bun           Bun $BUN_VERSION from the npm registry into ~/.bun (a symlink /usr/local/bin/bun when root)
#   servers       Debian packages redis-server redis-tools postgresql-15 curl unzip, plus maven and
#                 openjdk-17-jre-headless when mvn / Java 17 are missing (Kafka and Elasticsearch jars
#                 come from Maven Central; scripts/stack.sh downloads them into the cache dir)
#   k6            built by `go install` (scripts/stack.sh); golang-go only when Go is missing
#   browser       Debian package chromium (the dashboard and /docs are tested in it)
#   prometheus    Debian package prometheus (promtool checks the alert rules; `stack.sh up prometheus`)
#   schemathesis  schemathesis from PyPI into a venv in the cache dir (python3-venv when needed)
#
# apt-get runs `apt-get update` first when the package lists are empty or a package is not found.
# Services that Debian's packages would start on install (Redis on 6379, PostgreSQL's "main" cluster
# on 5432) are kept from starting, so they never take the ports of the stack that scripts/stack.sh runs.
set -euo pipefail

INSTALL_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUN_VERSION="$(sed -n 's/.*"packageManager": *"bun@\([0-9.]*\)".*/\1/p' "$INSTALL_REPO_ROOT/package.json")"
SCHEMATHESIS_VERSION=4.32.5
INSTALL_CACHE_DIR="${FLASHSALE_CACHE_DIR:-$HOME/.cache/flash-sale}"

note() { printf '[install] %s\n' "$*" >&2; }
fail() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" == 0 ]]; }
sudo_() { if is_root; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else fail "root (or sudo) is needed to run: $*"; fi; }

apt_lists_empty() { ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }
apt_updated=0
apt_update() {
  ((apt_updated)) && return 0
  note "apt-get update"
  sudo_ apt-get update -qq >/dev/null
  apt_updated=1
}

# apt_install <package>...: install the missing ones, with services kept from starting.
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || fail "apt-get is not available; install these yourself: ${missing[*]}"
  note "installing Debian packages: ${missing[*]}"
  apt_lists_empty && apt_update
  # policy-rc.d 101 = "do not start services" (the Docker-image convention); PostgreSQL's packaging
  # also creates and starts a "main" cluster on 5432 unless createcluster.conf says not to.
  local own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | sudo_ tee /usr/sbin/policy-rc.d >/dev/null
    sudo_ chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  if [[ " ${missing[*]} " == *" postgresql"* ]]; then
    sudo_ mkdir -p /etc/postgresql-common/createcluster.d
    echo 'create_main_cluster = false' | sudo_ tee /etc/postgresql-common/createcluster.d/flashsale.conf >/dev/null
  fi
  local rc=0
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || rc=$?
  if ((rc != 0 && apt_updated == 0)); then
    apt_update # an old list can name versions the mirror no longer has
    rc=0
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  fi
  ((own_policy)) && sudo_ rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || fail "apt-get install ${missing[*]} failed (exit $rc)"
}

java_major() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/java}"
  java="${java:-$(command -v java || true)}"
  [[ -n "$java" && -x "$java" ]] || { echo 0; return; }
  "$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1
}

install_bun() {
  local prefix="$HOME/.bun" user_path="$PATH"
  if [[ -x "$prefix/bin/bun" && "$("$prefix/bin/bun" --version 2>/dev/null)" == "$BUN_VERSION" ]]; then :
  elif command -v bun >/dev/null && [[ "$(bun --version)" == "$BUN_VERSION" ]]; then return 0
  else
    if command -v bun >/dev/null; then
      # Somebody's own Bun of another version: leave it alone, keep the pinned one in the cache dir.
      prefix="$INSTALL_CACHE_DIR/bun-$BUN_VERSION"
      [[ -x "$prefix/bin/bun" ]] && { export PATH="$prefix/bin:$PATH"; return 0; }
    fi
    command -v npm >/dev/null || apt_install npm
    note "installing Bun $BUN_VERSION from the npm registry into $prefix"
    npm install -g --prefix "$prefix" --no-fund --no-audit --update-notifier=false --loglevel=error "bun@$BUN_VERSION" >/dev/null
  fi
  export PATH="$prefix/bin:$PATH"
  # Leave `bun` usable in the user's own shell afterwards: a link in /usr/local/bin for root's own
  # ~/.bun (never over somebody else's bun), else the PATH line to add.
  if is_root && [[ "$prefix" == "$HOME/.bun" ]] && { [[ ! -e /usr/local/bin/bun ]] || [[ "$(readlink /usr/local/bin/bun)" == "$prefix/bin/bun" ]]; }; then
    ln -sf "$prefix/bin/bun" /usr/local/bin/bun
  elif [[ "$(PATH="$user_path" command -v bun 2>/dev/null || true)" != "$prefix/bin/bun" && "$prefix" == "$HOME/.bun" ]]; then
    note "Bun $BUN_VERSION is in $prefix/bin; add it to your PATH: export PATH=\"$prefix/bin:\$PATH\""
  fi
}

install_servers() {
  local pkgs=(redis-server redis-tools postgresql-15 curl unzip)
  command -v mvn >/dev/null || pkgs+=(maven)
  (($(java_major) >= 17)) || pkgs+=(openjdk-17-jre-headless)
  apt_install "${pkgs[@]}"
}

install_go() {
  command -v go >/dev/null && return 0
  apt_install golang-go
}

install_browser() {
  command -v chromium >/dev/null || apt_install chromium fonts-dejavu-core
}

install_prometheus() {
  command -v promtool >/dev/null || apt_install prometheus
}

# The venv's bin dir on stdout.
install_schemathesis() {
  local venv="$INSTALL_CACHE_DIR/venv-schemathesis-$SCHEMATHESIS_VERSION"
  if [[ ! -x "$venv/bin/schemathesis" ]]; then
    command -v python3 >/dev/null || apt_install python3
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    note "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
  fi
  echo "$venv/bin"
}

install_main() {
  local what=("$@") w
  ((${#what[@]})) || what=(all)
  for w in "${what[@]}"; do
    case "$w" in
      all) install_bun; install_servers; install_go; install_browser; install_prometheus; install_schemathesis >/dev/null ;;
      bun) install_bun ;;
      servers) install_servers ;;
      k6 | go) install_go ;;
      browser) install_browser ;;
      prometheus) install_prometheus ;;
      schemathesis) install_schemathesis ;;
      *) fail "unknown part '$w' (all bun servers k6 browser prometheus schemathesis)" ;;
    esac
  done
}

# Sourcing this file gives its functions without running anything.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then install_main "$@"; fi
