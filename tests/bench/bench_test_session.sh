#!/usr/bin/env bash
# Benchmarks of issue 4, run by `make bench` (tests/bench/run.sh starts the
# cluster and exports PGHOST, PGPORT, PGUSER).  Prints figures and ratios;
# asserts nothing.
#
#  1. Per-test cost: duet.test_begin() + 20 statements + duet.test_end(),
#     against the same 20 statements alone in autocommit (goal: at most
#     1.3x), in one BEGIN ... ROLLBACK (for reference), and against
#     a fresh database per test, CREATE DATABASE ... TEMPLATE + connect +
#     the statements + DROP DATABASE (goal: at least 50x faster).
#  2. Cleanup worker: time from the age limit to the kill, for a session
#     idle in transaction and a running query (goal: at most limit +
#     interval + 0.2 s), and its CPU with 200 idle connections at a 1 s
#     interval (goal: under 1% of a core).
#
# Short on purpose (2 shared cores): BENCH_SECONDS per pgbench run (3).
set -euo pipefail
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
SECS=${BENCH_SECONDS:-3}
DB=duet_bench_ts
TMPL=duet_bench_ts_tmpl
work=$(mktemp -d /tmp/duetbench.XXXXXX)
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

cleanup() {
    q -d postgres -c "ALTER SYSTEM RESET duet.transaction_timeout" \
        -c "ALTER SYSTEM RESET duet.cleanup_interval" \
        -c "ALTER SYSTEM RESET duet.cleanup_superusers" \
        -c "ALTER SYSTEM RESET duet.cleanup_exempt_applications" \
        -c "SELECT pg_reload_conf()" >/dev/null 2>&1 || true
    [ -n "${holder:-}" ] && kill "$holder" 2>/dev/null
    [ -n "${victim:-}" ] && kill "$victim" 2>/dev/null
    wait 2>/dev/null || true
    q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS bench_fresh" \
        -c "DROP DATABASE IF EXISTS $TMPL" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
q -d $DB -c "CREATE EXTENSION duet" -c "CREATE TABLE bench_t (id serial PRIMARY KEY, k int, v text)" \
    -c "INSERT INTO bench_t (k, v) SELECT g, 'row ' || g FROM generate_series(1, 1000) g" \
    -c "CREATE INDEX ON bench_t (k)" -c "VACUUM ANALYZE bench_t"

# the 20 statements of one "test": inserts, lookups, updates, a delete
{
    echo '\set k random(1, 1000)'
    for i in $(seq 1 8); do echo "INSERT INTO bench_t (k, v) VALUES (:k + $i, 'new');"; done
    for i in $(seq 1 6); do echo "SELECT id, v FROM bench_t WHERE k = :k + $i;"; done
    for i in $(seq 1 5); do echo "UPDATE bench_t SET v = 'updated' WHERE k = :k + $i;"; done
    echo "DELETE FROM bench_t WHERE k = :k AND v = 'new';"
} >"$work/stmts.sql"
{
    echo 'SELECT duet.test_begin();'
    cat "$work/stmts.sql"
    echo 'SELECT duet.test_end();'
} >"$work/session.sql"
# the closest thing without duet: one transaction rolled back (no nesting)
{
    echo 'BEGIN;'
    cat "$work/stmts.sql"
    echo 'ROLLBACK;'
} >"$work/rollback.sql"

tps() { # script -> transactions (tests) per second, one client
    "$PGBENCH" -n -c 1 -T "$SECS" -f "$1" $DB 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

plain=$(tps "$work/stmts.sql")
session=$(tps "$work/session.sql")
rollback=$(tps "$work/rollback.sql")

# fresh database per test: template, then create + connect + statements + drop
q -d postgres -c "DROP DATABASE IF EXISTS $TMPL" -c "CREATE DATABASE $TMPL TEMPLATE $DB"
sed 's/:k/500/g; /^\\set/d' "$work/stmts.sql" >"$work/fresh.sql"
n=5
t0=$(date +%s.%N)
for _ in $(seq 1 $n); do
    q -d postgres -c "CREATE DATABASE bench_fresh TEMPLATE $TMPL"
    q -d bench_fresh -f "$work/fresh.sql" >/dev/null
    q -d postgres -c "DROP DATABASE bench_fresh"
done
t1=$(date +%s.%N)

awk -v p="$plain" -v s="$session" -v r="$rollback" -v t0="$t0" -v t1="$t1" -v n="$n" 'BEGIN {
    ps = 1000 / p; ss = 1000 / s; rs = 1000 / r; fs = (t1 - t0) * 1000 / n
    printf "per test: 20 statements alone %.2f ms, in BEGIN..ROLLBACK %.2f ms, in a test session %.2f ms, fresh database %.1f ms\n", ps, rs, ss, fs
    printf "test session / statements alone: %.2fx (goal <= 1.3x); / BEGIN..ROLLBACK: %.2fx\n", ss / ps, ss / rs
    printf "fresh database / test session: %.0fx faster (goal >= 50x)\n", fs / ss
}'

# 2. the worker: limit 1 s, interval 200 ms; sessions are superusers here
limit_ms=1000
interval_ms=200
q -d postgres -c "ALTER SYSTEM SET duet.transaction_timeout = '${limit_ms}ms'" \
    -c "ALTER SYSTEM SET duet.cleanup_interval = '${interval_ms}ms'" \
    -c "ALTER SYSTEM SET duet.cleanup_superusers = on" \
    -c "ALTER SYSTEM SET duet.cleanup_exempt_applications = 'duet_bench_observer'" \
    -c "SELECT pg_reload_conf()" >/dev/null
q -d $DB -c "SELECT duet.cleanup_log_reset()" >/dev/null
for i in 1 2 3; do
    (echo "BEGIN; SELECT 1;"; sleep 2.5) |
        PGAPPNAME=duet_bench_idle psql -X -q -d $DB >/dev/null 2>&1 &
    sleep 0.05
    PGAPPNAME=duet_bench_long psql -X -q -d $DB -c "SELECT pg_sleep(2.5)" >/dev/null 2>&1 &
    wait
done
PGAPPNAME=duet_bench_observer q -d $DB -c "
    SELECT format('time to kill (limit %s ms + interval %s ms): %s ms mean, %s ms max over %s kills; goal <= %s ms',
                  $limit_ms, $interval_ms,
                  round(avg(extract(epoch FROM logged_at - xact_start)) * 1000),
                  round(max(extract(epoch FROM logged_at - xact_start)) * 1000),
                  count(*), $limit_ms + $interval_ms + 200)
      FROM duet.cleanup_log() WHERE application_name LIKE 'duet_bench_%'"

# the worker's CPU with 200 idle connections at a 1 s interval (limit 1 h,
# so that the query runs every second and ends nothing)
q -d postgres -c "ALTER SYSTEM SET duet.transaction_timeout = '1h'" \
    -c "ALTER SYSTEM SET duet.cleanup_interval = '1s'" -c "SELECT pg_reload_conf()" >/dev/null
printf '\\sleep 1000 ms\n' >"$work/idle.sql"
"$PGBENCH" -n -c 200 -j 4 -T 14 -f "$work/idle.sql" $DB >/dev/null 2>&1 &
holder=$!
sleep 3
wpid=$(q -d postgres -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'duet cleanup worker'")
conns=$(q -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
ticks() { awk '{ print $14 + $15 }' "/proc/$wpid/stat"; }
c0=$(ticks)
s0=$(date +%s.%N)
sleep 10
c1=$(ticks)
s1=$(date +%s.%N)
wait "$holder" 2>/dev/null || true
holder=
awk -v c0="$c0" -v c1="$c1" -v s0="$s0" -v s1="$s1" -v hz="$(getconf CLK_TCK)" -v n="$conns" 'BEGIN {
    printf "worker CPU with %d connections, 1 s interval: %.2f%% of a core (goal < 1%%)\n", n, (c1 - c0) / hz / (s1 - s0) * 100
}'
