#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for the tests.
#
#   eval "$(tests/pgcluster.sh start)"   initdb + start; prints exports:
#                                        DUET_PGDIR, PGHOST, PGPORT, PGUSER, DUET_PG_URL
#   tests/pgcluster.sh stop DIR          fast stop of the cluster in DIR, then remove DIR
#   tests/pgcluster.sh restart DIR       stop and start the same cluster (data kept)
#   tests/pgcluster.sh down DIR | up DIR  stop, or start again, without removing
#
# PostgreSQL refuses to run as root, so from a root shell the server runs as
# the postgres user in a directory it owns.  Unix socket only, trust auth,
# durability off, shared_preload_libraries=duet (install pg_ext first).
# Extra server settings can be given in DUET_PG_OPTS ("-c name=value ...").
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
PORT=${DUET_PG_PORT:-5432}

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

server_opts() {
    local dir=$1
    echo "-c listen_addresses='' -c unix_socket_directories=$dir -c port=$PORT" \
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        "-c shared_preload_libraries=duet -c max_connections=300" \
        "-c max_worker_processes=16 -c log_min_messages=warning ${DUET_PG_OPTS:-}"
}

start_server() {
    local dir=$1
    as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "$(server_opts "$dir")" start >/dev/null || {
        echo "pgcluster: server did not start; its log:" >&2
        cat "$dir/server.log" >&2
        exit 1
    }
}

stop_server() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || {
        # a server that will not stop in time is killed by its own pid, never by name
        local pid
        pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    }
}

case "${1:-}" in
start)
    dir=$(mktemp -d /tmp/duetpg.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    as_pg "$BIN/initdb" -D "$dir/data" --no-sync -A trust -U postgres -E UTF8 \
        --locale=C >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    start_server "$dir"
    cat <<ENV
export DUET_PGDIR=$dir PGHOST=$dir PGPORT=$PORT PGUSER=postgres
export DUET_PG_URL='postgresql://postgres@/postgres?host=$dir&port=$PORT'
ENV
    ;;
stop)
    dir=${2:?usage: pgcluster.sh stop DIR}
    case "$dir" in /tmp/duetpg.*) ;; *) echo "pgcluster: not a test cluster: $dir" >&2; exit 1 ;; esac
    stop_server "$dir"
    rm -rf "$dir"
    ;;
restart)
    dir=${2:?usage: pgcluster.sh restart DIR}
    stop_server "$dir"
    start_server "$dir"
    ;;
down)
    stop_server "${2:?usage: pgcluster.sh down DIR}"
    ;;
up)
    start_server "${2:?usage: pgcluster.sh up DIR}"
    ;;
*)
    echo "usage: pgcluster.sh start | stop DIR | restart DIR | down DIR | up DIR" >&2
    exit 2
    ;;
esac
