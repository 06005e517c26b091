#!/usr/bin/env bash
# A Marquee cluster on this machine (issue 17), for tests, benchmarks and a person trying it:
# PostgreSQL 15 (a primary and a synchronous standby), three Marquee servers on loopback ports with
# their own data dirs and one shared dir, and HAProxy (deploy/haproxy.cfg) in front of the servers
# and of PostgreSQL.
#
#   scripts/cluster.sh start            everything, the first server first (it imports and embeds the catalog)
#   scripts/cluster.sh stop             everything, and the cluster's directory removed
#   scripts/cluster.sh status           what runs, and each server's /ready
#   scripts/cluster.sh kill-server N    kill -9 server N (1..3)      scripts/cluster.sh start-server N
#   scripts/cluster.sh kill-primary     kill -9 the PostgreSQL primary
#   scripts/cluster.sh promote          promote the standby (pg_ctl promote): it takes the primary's place
#
# MARQUEE_CLUSTER_DIR (default $TMPDIR/marquee-cluster) holds it all; MARQUEE_CLUSTER_PORT (default
# 18080) is the load balancer's port, the servers take the next three, PostgreSQL (through HAProxy)
# the one after, the primary and the standby the two after that; HAProxy's admin socket is
# $dir/haproxy.sock. Every other MARQUEE_* variable (MARQUEE_CATALOG, MARQUEE_ADMIN_TOKEN, ...) is
# passed to the servers.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${MARQUEE_CLUSTER_DIR:-${TMPDIR:-/tmp}/marquee-cluster}"
base="${MARQUEE_CLUSTER_PORT:-18080}"
servers=3
lb_port=$base
pg_proxy_port=$((base + servers + 1))
primary_port=$((base + servers + 2))
standby_port=$((base + servers + 3))
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[[ -x "$bin/initdb" ]] || { echo "cluster.sh: no PostgreSQL (apt-get install postgresql-15)" >&2; exit 1; }

# PostgreSQL refuses to run as root: as root, its tools run as the postgres user.
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
server_port() { echo $((base + $1)); }
database_url="postgres://marquee@127.0.0.1:${pg_proxy_port}/marquee"
# PostgreSQL's directory, linked from $dir/pg (see start_postgres).
pg="$(readlink "$dir/pg" 2>/dev/null || true)"

wait_for() { # what, seconds, command...
  local what=$1 seconds=$2; shift 2
  for ((i = 0; i < seconds * 5; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "cluster.sh: $what not ready after ${seconds}s" >&2
  return 1
}
ready() { curl -fsS "http://127.0.0.1:$(server_port "$1")/ready"; }

start_postgres() {
  # Under /tmp, not $dir: as root the postgres user must reach it, and $dir's parents may be private.
  pg=$(mktemp -d /tmp/marquee-cluster-pg.XXXXXX)
  ln -s "$pg" "$dir/pg"
  if [[ $(id -u) == 0 ]]; then chown postgres: "$pg"; fi
  as_pg "$bin/initdb" -D "$pg/primary" -A trust -U marquee -E UTF8 >"$pg/initdb.log"
  cat >>"$pg/primary/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $primary_port
unix_socket_directories = '$pg'
wal_level = replica
max_wal_senders = 4
hot_standby = on
CONF
  as_pg "$bin/pg_ctl" -D "$pg/primary" -l "$pg/primary.log" -w start >/dev/null
  as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U marquee -D "$pg/standby" -R -X stream
  cat >>"$pg/standby/postgresql.auto.conf" <<CONF
port = $standby_port
primary_conninfo = 'host=127.0.0.1 port=$primary_port user=marquee application_name=standby'
CONF
  as_pg "$bin/pg_ctl" -D "$pg/standby" -l "$pg/standby.log" -w start >/dev/null
  # Synchronous from here on: a commit is acknowledged once the standby has it too.
  as_pg "$bin/psql" -h "$pg" -p "$primary_port" -U marquee -d postgres -qc "ALTER SYSTEM SET synchronous_standby_names = 'standby'" -c 'SELECT pg_reload_conf()' >/dev/null
  as_pg "$bin/psql" -h "$pg" -p "$primary_port" -U marquee -d postgres -qc 'CREATE DATABASE marquee'
}

start_haproxy() {
  MARQUEE_HAPROXY_SOCKET="$dir/haproxy.sock" MARQUEE_LB_ADDR="127.0.0.1:$lb_port" MARQUEE_PG_ADDR="127.0.0.1:$pg_proxy_port" \
    MARQUEE_PG_PRIMARY="127.0.0.1:$primary_port" MARQUEE_PG_STANDBY="127.0.0.1:$standby_port" \
    MARQUEE_SERVER1="127.0.0.1:$(server_port 1)" MARQUEE_SERVER2="127.0.0.1:$(server_port 2)" MARQUEE_SERVER3="127.0.0.1:$(server_port 3)" \
    haproxy -f "$root/deploy/haproxy.cfg" -D -p "$dir/haproxy.pid"
}

start_server() {
  local n=$1
  mkdir -p "$dir/server$n"
  (
    cd "$root"
    PORT="$(server_port "$n")" HOST=127.0.0.1 MARQUEE_DATA_DIR="$dir/server$n" MARQUEE_SHARED_DIR="$dir/shared" \
      MARQUEE_DATABASE_URL="$database_url" setsid node bin/marquee.js serve >>"$dir/server$n.log" 2>&1 &
    echo $! >"$dir/server$n.pid"
  )
}

stop_pid() { # file, signal
  [[ -f $1 ]] || return 0
  kill "-$2" "$(cat "$1")" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do kill -0 "$(cat "$1")" 2>/dev/null || break; sleep 0.2; done
  rm -f "$1"
}

case "${1:-}" in
  start)
    [[ -e $dir ]] && { echo "cluster.sh: $dir exists: scripts/cluster.sh stop first" >&2; exit 1; }
    mkdir -p "$dir/shared"
    start_postgres
    start_haproxy
    start_server 1
    wait_for "server 1 (importing and embedding the catalog: $dir/server1.log)" 1800 ready 1
    for ((n = 2; n <= servers; n++)); do start_server "$n"; done
    for ((n = 2; n <= servers; n++)); do wait_for "server $n ($dir/server$n.log)" 600 ready "$n"; done
    echo "marquee cluster: http://127.0.0.1:$lb_port (servers on $(server_port 1)-$(server_port $servers); PostgreSQL $database_url; $dir)"
    ;;
  stop)
    for ((n = 1; n <= servers; n++)); do stop_pid "$dir/server$n.pid" TERM; done
    stop_pid "$dir/haproxy.pid" TERM
    for db in standby primary; do
      [[ -f $pg/$db/postmaster.pid ]] && as_pg "$bin/pg_ctl" -D "$pg/$db" -m fast -w stop >/dev/null 2>&1 || true
    done
    [[ -n $pg ]] && rm -rf "$pg"
    rm -rf "$dir"
    ;;
  status)
    for ((n = 1; n <= servers; n++)); do echo "server $n: $(ready "$n" 2>/dev/null || echo down)"; done
    for db in primary standby; do echo "$db: $(as_pg "$bin/pg_ctl" -D "$pg/$db" status 2>/dev/null | head -n 1 || echo down)"; done
    ;;
  kill-server) stop_pid "$dir/server${2:?which server}.pid" KILL ;;
  start-server)
    start_server "${2:?which server}"
    wait_for "server $2 ($dir/server$2.log)" 600 ready "$2"
    ;;
  kill-primary) kill -KILL "$(head -n 1 "$pg/primary/postmaster.pid")" ;;
  promote) as_pg "$bin/pg_ctl" -D "$pg/standby" -w promote >/dev/null ;;
  *)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
    ;;
esac
