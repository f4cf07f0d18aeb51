#!/usr/bin/env bash
# Pool benchmarks (issue 3), run by `make bench` through tests/bench/run.sh,
# which starts a throwaway cluster and exports PGHOST, PGPORT, DUET_PG_URL.
#
#   1. uncontended acquire + SELECT 1 + release vs raw libpq on one connection
#   2. 8 threads sharing a pool of 4, pgbench's select-only transaction on a
#      scale-1 database, vs `pgbench -S -c 4` on the same server just before
#   3. pooled vs connect-per-query
#   4. execute_many of 100,000 inserts vs PQexecPrepared per row vs COPY
#
# BENCH_SECONDS (default 2) sets the length of each select-only run (3 rounds
# of pgbench simple, duet, pgbench extended).
set -euo pipefail
ROOT=${DUET_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
PGBIN=/usr/lib/postgresql/15/bin
SECS=${BENCH_SECONDS:-2}
: "${DUET_PG_URL:?run through tests/bench/run.sh (make bench)}"

work=$(mktemp -d /tmp/duetbench.XXXXXX)
trap 'rm -rf "$work"' EXIT
PG_INC=$(pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror \
    -I"$ROOT/client" $PG_INC -o "$work/bench_pool" "$ROOT/tests/bench/bench_pool.c" \
    "$ROOT/client/build/libduet.a" -lpq -lsqlite3 -lpthread -lm

pg=(-h "$PGHOST" -p "$PGPORT" -U postgres)
if [ "$(psql "${pg[@]}" -d postgres -tAc "SELECT count(*) FROM pg_database WHERE datname = 'duet_pgbench'")" = 0 ]; then
    psql "${pg[@]}" -d postgres -qc "CREATE DATABASE duet_pgbench"
fi
"$PGBIN/pgbench" "${pg[@]}" -i -s 1 -q duet_pgbench >"$work/init.log" 2>&1 || {
    cat "$work/init.log"
    exit 1
}

"$work/bench_pool" "$DUET_PG_URL" "postgresql://postgres@/duet_pgbench?host=$PGHOST&port=$PGPORT" \
    "$PGBIN/pgbench -h $PGHOST -p $PGPORT -U postgres -n -S -c 4 -j 2 duet_pgbench" "$SECS"
