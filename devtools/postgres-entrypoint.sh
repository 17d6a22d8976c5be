#!/bin/bash
# Entrypoint of the stand-in postgres image (devtools/base_images.py), with the official image's
# interface: POSTGRES_USER, POSTGRES_PASSWORD(_FILE), POSTGRES_DB, PGDATA, /docker-entrypoint-initdb.d.
set -euo pipefail

if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec gosu postgres "$0" "$@"
fi

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then  # the official image's *_FILE convention
    POSTGRES_PASSWORD="$(<"$POSTGRES_PASSWORD_FILE")"
  fi
  : "${POSTGRES_PASSWORD:?is required (the official image refuses to start without it too)}"
  user="${POSTGRES_USER:-postgres}"
  database="${POSTGRES_DB:-$user}"
  initdb -D "$PGDATA" --username="$user" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  # Initialise on the Unix socket only, so nothing reaches the server over TCP before it is ready.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$database" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -U "$user" -d postgres -qc "CREATE DATABASE \"$database\""
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sh) . "$script" ;;
      *.sql) psql -v ON_ERROR_STOP=1 -U "$user" -d "$database" -f "$script" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "database initialised: user $user, database $database"
fi

exec "$@"
