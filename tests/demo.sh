#!/usr/bin/env bash
# `make demo`: builds client/examples/quickstart.c (the README quickstart)
# against the freshly built libduet and runs it on SQLite in a temporary
# directory; with DUET_PG_URL set, runs it again against PostgreSQL.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/duet-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
PG_INC=$(pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
cc -std=c11 -Wall -Wextra -Werror -I"$ROOT/client" $PG_INC -o "$work/quickstart" \
    "$ROOT/client/examples/quickstart.c" "$ROOT/client/build/libduet.a" -lpq -lsqlite3 -lpthread -lm

echo "== quickstart on SQLite ($work)"
(cd "$work" && ./quickstart)

if [ -n "${DUET_PG_URL:-}" ]; then
    echo
    echo "== quickstart on PostgreSQL"
    "$work/quickstart" "$DUET_PG_URL" "$DUET_PG_URL"
fi
