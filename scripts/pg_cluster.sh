#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the test suite, under target/pgtest, listening on loopback
# only (no system service is used or needed).
#
#   scripts/pg_cluster.sh start   installs PostgreSQL from Debian's packages when it is missing,
#                                 creates a new cluster (an earlier run's is stopped and removed),
#                                 starts it on a free port and prints its URL
#                                 (postgres://engram@127.0.0.1:PORT/postgres)
#   scripts/pg_cluster.sh stop    stops it (its files stay until the next start)
#
# Tests create and drop their own databases in it (tests/api/support: `postgres_database`).
# Authentication is `trust` on 127.0.0.1 and the socket dir: the cluster is for tests only.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="$PWD/target/pgtest"
data="$dir/data"
log="$dir/server.log"

find_bin() {
  local b
  for b in /usr/lib/postgresql/*/bin; do
    if [ -x "$b/initdb" ] && [ -x "$b/pg_ctl" ]; then
      echo "$b"
      return 0
    fi
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"
    return 0
  fi
  return 1
}

install_postgres() {
  echo "pg_cluster.sh: PostgreSQL is missing; installing it from Debian's packages" >&2
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends postgresql >&2 ||
    { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends postgresql >&2; }
}

# initdb and the server refuse to run as root: as root, they run as the `postgres` user the
# Debian package creates, and the cluster's directory belongs to it.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local bin
  bin="$(find_bin)" || { install_postgres; bin="$(find_bin)"; } ||
    { echo "pg_cluster.sh: no initdb/pg_ctl after installing PostgreSQL" >&2; exit 1; }
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir"
  fi
  if [ -f "$data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
  rm -rf "$data"
  as_owner "$bin/initdb" -D "$data" -U engram --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  local port
  port="$(free_port)"
  # Small and fast: the data is thrown away, so durability settings that only cost time are off.
  as_owner "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off -c max_connections=1000 -c shared_buffers=64MB" \
    start >/dev/null || { tail -20 "$log" >&2; exit 1; }
  echo "postgres://engram@127.0.0.1:$port/postgres"
}

stop() {
  local bin
  bin="$(find_bin)" || exit 0
  if [ -f "$data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
