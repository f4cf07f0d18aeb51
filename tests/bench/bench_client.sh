#!/usr/bin/env bash
# libduet vs raw libpq and raw sqlite3: fetch_all of 100,000 rows, the SELECT 1
# round trip on one persistent connection, and pipelined execute_many.
# Run by tests/bench/run.sh (`make bench`), which starts a cluster and sets
# DUET_PG_URL.  Prints ratios; asserts nothing.
set -euo pipefail
ROOT=${DUET_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
: "${DUET_PG_URL:?DUET_PG_URL is not set (run through make bench)}"
work=$(mktemp -d /tmp/duet-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
PG_INC=$(pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Werror -I"$ROOT/client" $PG_INC \
    -o "$work/bench_client" "$ROOT/tests/bench/bench_client.c" "$ROOT/client/build/libduet.a" \
    -lpq -lsqlite3 -lpthread -lm
"$work/bench_client" "$DUET_PG_URL" "$work"
