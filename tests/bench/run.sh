#!/usr/bin/env bash
# `make bench`: runs every tests/bench/bench_*.sh against one throwaway
# cluster.  Each prints its figures as ratios against a baseline measured in
# the same run.  Benchmarks assert nothing: they are not tests.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
env=$(tests/pgcluster.sh start) || exit 1
eval "$env"
export DUET_PGDIR PGHOST PGPORT PGUSER DUET_PG_URL
export DUET_ROOT=$ROOT DUET_SQLITE_EXT=$ROOT/sqlite_ext/duet.so
trap 'tests/pgcluster.sh stop "$DUET_PGDIR"' EXIT
status=0
for b in tests/bench/bench_*.sh; do
    [ -e "$b" ] || continue
    echo "== $(basename "$b" .sh)"
    bash "$b" || { echo "(benchmark $b failed)"; status=1; }
done
exit $status
