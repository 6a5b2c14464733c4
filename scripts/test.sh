#!/usr/bin/env bash
# Sets up and runs every check of tdauto: redis-server and PostgreSQL for the tests (if
# missing), a venv with the test extra, ruff, mypy and pytest. Usage: scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server not found: installing it (the tests start their own servers)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
fi

# iproute2: the multi-host tests (tests/multihost) make hosts out of network namespaces.
if ! command -v ip >/dev/null 2>&1; then
  echo "ip not found: installing iproute2 (the multi-host tests use network namespaces)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2
fi

# PostgreSQL: the tests start a private cluster (initdb, pg_ctl from /usr/lib/postgresql/*/bin)
# and back it up and restore it with pg_dump, pg_restore and psql.
pg_present() {
  for tool in pg_dump pg_restore psql; do command -v "$tool" >/dev/null 2>&1 || return 1; done
  for tool in initdb pg_ctl; do compgen -G "/usr/lib/postgresql/*/bin/$tool" >/dev/null || return 1; done
}
if ! pg_present; then
  echo "PostgreSQL binaries not found: installing postgresql (the tests start their own server)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi

# Chromium: the HTML report test opens a report headless and checks its rendered charts.
if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium not found: installing it (the report test renders a report headless)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/pytest -q "$@"
