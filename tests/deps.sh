#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only when they are missing.
#   tests/deps.sh build   compilers' inputs: PGXS, libpq, sqlite3 headers
#   tests/deps.sh check   plus what the test suites run: server, sqlite3 CLI, cmocka
#   tests/deps.sh fuzz    plus clang with libFuzzer
set -euo pipefail

need=()
have_file() { [ -e "$1" ] || need+=("$2"); }
have_cmd() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }

have_cmd cc gcc
have_cmd make make
have_cmd pkg-config pkg-config
have_file /usr/include/postgresql/libpq-fe.h libpq-dev
have_file /usr/include/sqlite3.h libsqlite3-dev
have_file /usr/lib/postgresql/15/lib/pgxs/src/makefiles/pgxs.mk postgresql-server-dev-15

case "${1:-build}" in
check | bench)
    have_file /usr/lib/postgresql/15/bin/postgres postgresql-15
    have_file /usr/lib/postgresql/15/bin/pgbench postgresql-15
    have_file /usr/include/cmocka.h libcmocka-dev
    have_cmd sqlite3 sqlite3
    have_cmd psql postgresql-client-15
    have_cmd runuser util-linux
    ;;
fuzz)
    have_cmd clang clang
    have_file /usr/include/cmocka.h libcmocka-dev
    ;;
esac

[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 1
fi
echo "installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
