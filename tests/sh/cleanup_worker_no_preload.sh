#!/usr/bin/env bash
# The cleanup worker on a cluster without shared_preload_libraries=duet:
# duet.start_cleanup_worker() starts it (a second call returns the same
# one), it ends a session idle in transaction past duet.transaction_timeout,
# the log in the spare shared memory records it, and test sessions work.
# Starts and stops a throwaway cluster of its own (about 2 s).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
env=$(DUET_PG_OPTS="-c shared_preload_libraries=''" "$ROOT/tests/pgcluster.sh" start)
eval "$env"
trap '"$ROOT/tests/pgcluster.sh" stop "$DUET_PGDIR"' EXIT
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }

[ -z "$(q -c "SHOW shared_preload_libraries")" ] || { echo "duet is preloaded"; exit 1; }
q -c "CREATE EXTENSION duet"
pid1=$(q -c "SELECT duet.start_cleanup_worker()")
sleep 0.3
pid2=$(q -c "SELECT duet.start_cleanup_worker()" 2>/dev/null)
[ "$pid1" = "$pid2" ] || { echo "two workers: $pid1 $pid2"; exit 1; }
# without preload a backend knows the settings once it has loaded the library
q -c "LOAD 'duet'" -c "ALTER SYSTEM SET duet.transaction_timeout = '500ms'" \
    -c "ALTER SYSTEM SET duet.cleanup_interval = '100ms'" \
    -c "ALTER SYSTEM SET duet.cleanup_superusers = on" -c "SELECT pg_reload_conf()" >/dev/null

# a victim idle in transaction, and a test session that must survive
(echo "BEGIN; SELECT 1;"; sleep 2) | PGAPPNAME=victim psql -X -q -d postgres >/dev/null 2>&1 &
(echo "SELECT duet.test_begin();"; sleep 2; echo "SELECT duet.test_end();") |
    PGAPPNAME=tester psql -X -q -At -d postgres >"$DUET_PGDIR/tester.out" 2>&1 &
sleep 1.2
log=$(q -c "SELECT application_name || ' ' || action || ' ' || source FROM duet.cleanup_log()")
alive=$(q -c "SELECT string_agg(application_name, ',' ORDER BY application_name)
              FROM pg_stat_activity WHERE application_name IN ('victim', 'tester')")
wait
echo "log: $log"
echo "alive after 1.2 s: $alive"
[ "$log" = "victim terminated worker" ] || { echo "unexpected log"; exit 1; }
[ "$alive" = "tester" ] || { echo "unexpected survivors"; exit 1; }
grep -q ERROR "$DUET_PGDIR/tester.out" && { cat "$DUET_PGDIR/tester.out"; exit 1; }
echo "cleanup_worker_no_preload: ok"
