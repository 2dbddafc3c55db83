#!/usr/bin/env bash
# Set up and run ProxyOS workers from a checkout, on a Debian machine with Python 3.11.
#
#   ./dev.sh run    create .venv, install, run the worker on the embedded default
#                   (SQLite database and SQLite queue under ./data/)
#   ./dev.sh test   also install what the tests use (Pebble, BIND 9, lego, PostgreSQL,
#                   Redis, sqlite3), start the services, and run the whole test suite;
#                   extra arguments go to pytest
#
# System packages are installed with apt-get (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
TEST_PACKAGES=(pebble bind9 bind9-utils caddy lego pdns-server pdns-backend-sqlite3 sqlite3 postgresql redis-server iproute2 prometheus)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

log() { printf '[dev.sh] %s\n' "$*" >&2; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing system packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

python_env() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV"; }
  fi
  log "installing the project into $VENV ($extras)"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e ".$extras"
}

start_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  log "starting PostgreSQL"
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 1; done
  log "PostgreSQL did not start"; return 1
}

start_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
  log "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0; sleep 1; done
  log "Redis did not start"; return 1
}

postgres_test_url() {
  # This machine's server trusts local TCP connections; a freshly installed Debian
  # server does not, so fall back to the socket with a role named after this user.
  if psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    echo "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    return
  fi
  local me; me=$(id -un)
  as_root su postgres -c "psql -qc \"CREATE ROLE \\\"$me\\\" SUPERUSER LOGIN\"" >/dev/null 2>&1 || true
  as_root su postgres -c "createdb -O \"$me\" test" >/dev/null 2>&1 || true
  echo "postgresql+psycopg:///test?host=/var/run/postgresql"
}

case "${1:-}" in
  run)
    shift
    python_env ""
    mkdir -p data
    exec "$VENV/bin/proxyos-worker" run "$@"
    ;;
  test)
    shift
    apt_install "${TEST_PACKAGES[@]}"
    python_env "[dev]"
    start_postgres
    start_redis
    export PROXYOS_TEST_DATABASE_URL=${PROXYOS_TEST_DATABASE_URL:-$(postgres_test_url)}
    export PROXYOS_TEST_REDIS_URL=${PROXYOS_TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
    log "PostgreSQL: $PROXYOS_TEST_DATABASE_URL  Redis: $PROXYOS_TEST_REDIS_URL"
    "$VENV/bin/ruff" check .
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
