#!/bin/bash
# Entrypoint of the churn-postgres image: on the first start (empty PGDATA) create the cluster,
# its owner POSTGRES_USER with POSTGRES_PASSWORD (or the file POSTGRES_PASSWORD_FILE names) and
# the database POSTGRES_DB; then run the given command (`postgres`: listen on all addresses,
# password logins only over TCP).
set -euo pipefail

if [[ "${1:-postgres}" != "postgres" ]]; then
  exec "$@"
fi
shift || true

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  password="${POSTGRES_PASSWORD:-}"
  if [[ -n "${POSTGRES_PASSWORD_FILE:-}" ]]; then
    password="$(<"$POSTGRES_PASSWORD_FILE")"
  fi
  if [[ -z "$password" ]]; then
    echo "churn-postgres: set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) for the first start" >&2
    exit 2
  fi
  echo "churn-postgres: creating the cluster in $PGDATA (owner ${POSTGRES_USER}, database ${POSTGRES_DB})"
  pwfile="$(mktemp)"
  trap 'rm -f "$pwfile"' EXIT
  printf '%s\n' "$password" >"$pwfile"
  initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
    --encoding=UTF8 --locale=C --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  {
    echo "listen_addresses = '*'"
    echo "password_encryption = 'scram-sha-256'"
  } >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [[ "$POSTGRES_DB" != "postgres" ]]; then
    # Single-user mode: no server, no socket, nothing listening while the database is made.
    echo "CREATE DATABASE \"${POSTGRES_DB//\"/\"\"}\" OWNER \"${POSTGRES_USER//\"/\"\"}\";" \
      | postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
fi

exec postgres -D "$PGDATA" "$@"
