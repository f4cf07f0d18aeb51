#!/usr/bin/env bash
# SQLite extension figures (issue 6), run by `make bench` (tests/bench/run.sh):
#   - duet_test_end() on a 10 MB database after 1,000 changed rows, against a
#     copy of the database file and a backup-API snapshot/restore;
#   - duet_upsert() per row against a prepared INSERT ... ON CONFLICT DO UPDATE.
# Prints figures and ratios; asserts nothing.  BENCH_SQLITE_MB sets the size.
set -euo pipefail
ROOT=${DUET_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
EXT=${DUET_SQLITE_EXT:-$ROOT/sqlite_ext/duet.so}
[ -e "$EXT" ] || make -C "$ROOT/sqlite_ext" >/dev/null
work=$(mktemp -d /tmp/duet_bench_sqlite.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -std=c11 -O2 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror \
    -o "$work/bench_sqlite" "$ROOT/tests/bench/bench_sqlite.c" -lsqlite3
"$work/bench_sqlite" "$EXT" "$work" "${BENCH_SQLITE_MB:-10}"
