#!/usr/bin/env bash
# A force-rollback test session seen from psql: the transaction status that
# libpq reports (PQtransactionStatus, shown by psql's %x prompt escape) is
# "in a transaction" from duet.test_begin() to duet.test_end(), also after
# the program's own COMMIT, and "failed" after an error until the client
# sends ROLLBACK.  psql prints prompts only on a terminal, hence script(1).
# Needs PGHOST/PGPORT of a running cluster with duet installed (run-suites).
set -euo pipefail
DB=duet_sh_test_session
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
trap 'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB"' EXIT
psql -X -q -v ON_ERROR_STOP=1 -d $DB -c "CREATE EXTENSION duet" -c "CREATE TABLE t (id int PRIMARY KEY)"

# one line per statement; the prompt before each shows the status after the previous
input=(
    "SELECT duet.test_begin();"
    "BEGIN;"
    "INSERT INTO t VALUES (1);"
    "COMMIT;"
    "SELECT count(*) FROM t;"
    "INSERT INTO t VALUES (1);"
    "ROLLBACK;"
    "SELECT count(*) FROM t;"
    "SELECT duet.test_end();"
    "SELECT count(*) FROM t;"
    "\\q"
)
out=$(printf '%s\n' "${input[@]}" |
    TERM=dumb timeout 30 script -qec \
        "psql -X -n -P pager=off -d $DB -v PROMPT1='[%x]=> ' -v PROMPT2=''" /dev/null |
    tr -d '\r')
echo "$out"

prompts=$(grep -o '^\[.\?\]=>' <<<"$out" | tr -d '=>' | tr '\n' ' ')
# start, then after: test_begin BEGIN INSERT COMMIT count error ROLLBACK count test_end count
expected='[] [*] [*] [*] [*] [*] [!] [*] [*] [] [] '
if [ "$prompts" != "$expected" ]; then
    echo "prompts:  $prompts"
    echo "expected: $expected"
    exit 1
fi
# the session's committed insert is visible to itself, and gone after test_end
counts=$(grep -A2 -- ' count *$' <<<"$out" | grep -E '^ +[0-9]+$' | tr -d ' ' | tr '\n' ' ' || true)
# (after the error outside a program transaction, ROLLBACK restarted the
# session, which discarded the committed row: the second count is 0)
if [ "$counts" != "1 0 0 " ]; then
    echo "counts: $counts (expected: 1 0 0)"
    exit 1
fi
echo "psql_test_session: ok"
