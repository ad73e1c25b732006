#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers on 127.0.0.1:5432.
# Starts a locally installed cluster that is not running; never installs one.
set -euo pipefail
host=127.0.0.1
port=${PGPORT:-5432}
if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version (cluster main)" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do
    pg_isready -q -h "$host" -p "$port" && exit 0
    sleep 0.5
  done
fi
echo "PostgreSQL is not reachable on $host:$port and could not be started." >&2
echo "Install it (apt-get install postgresql) or point SLUICE_TEST_DATABASE_URL at one." >&2
exit 1
