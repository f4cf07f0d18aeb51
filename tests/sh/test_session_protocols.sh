#!/usr/bin/env bash
# Force-rollback test sessions over the extended query protocol, with
# prepared statements and in a pipeline, driven by pgbench (psql speaks only
# the simple protocol): the program's BEGIN/ROLLBACK/COMMIT keep their
# meaning, test_end discards everything, and test_begin after another
# statement of the same pipeline is refused, never a FATAL.
# Needs PGHOST/PGPORT of a running cluster with duet installed (run-suites).
set -euo pipefail
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
DB=duet_sh_test_session_protocols
work=$(mktemp -d /tmp/duetsh.XXXXXX)
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
trap 'rm -rf "$work"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB"' EXIT
psql -X -q -v ON_ERROR_STOP=1 -d $DB -c "CREATE EXTENSION duet" -c "CREATE TABLE t (id int PRIMARY KEY)"

# a failed \if check divides by zero, which pgbench reports as a failure
cat >"$work/session.sql" <<'SQL'
SELECT duet.test_begin();
BEGIN;
INSERT INTO t VALUES (1);
ROLLBACK;
BEGIN;
INSERT INTO t VALUES (2);
COMMIT;
SELECT count(*) AS n, min(id) AS id FROM t \gset
\if :n != 1 or :id != 2
SELECT 1/0;
\endif
SELECT duet.test_end();
SQL

cat >"$work/pipeline.sql" <<'SQL'
\startpipeline
SELECT duet.test_begin();
BEGIN;
INSERT INTO t VALUES (1);
COMMIT;
INSERT INTO t VALUES (2);
\endpipeline
SELECT count(*) AS n FROM t \gset
\if :n != 2
SELECT 1/0;
\endif
SELECT duet.test_end();
SQL

# a program that only rolls back, with writes in between: the next BEGIN
# merges the levels a ROLLBACK leaves (when it is parsed: prepared BEGINs
# executed again keep the older nesting); what the program sees is the same
cat >"$work/rollback_loop.sql" <<'SQL'
SELECT duet.test_begin();
BEGIN;
INSERT INTO t VALUES (1);
ROLLBACK;
INSERT INTO t VALUES (2);
BEGIN;
INSERT INTO t VALUES (3);
ROLLBACK;
INSERT INTO t VALUES (4);
BEGIN;
INSERT INTO t VALUES (5);
ROLLBACK;
BEGIN;
INSERT INTO t VALUES (6);
COMMIT;
SELECT count(*) AS n, sum(id) AS s FROM t \gset
\if :n != 3 or :s != 12
SELECT 1/0;
\endif
SELECT duet.test_end();
SQL

cat >"$work/late_begin.sql" <<'SQL'
\startpipeline
SELECT 1;
SELECT duet.test_begin();
\endpipeline
SQL

run() { # mode script transactions -> pgbench output
    "$PGBENCH" -n -M "$1" -t "$3" -f "$2" $DB 2>&1
}
expect_ok() { # mode script
    local out
    out=$(run "$1" "$2" 10 || true)
    if ! grep -q 'actually processed: 10/10' <<<"$out"; then
        echo "--- $1 $(basename "$2") failed:"
        echo "$out"
        exit 1
    fi
    echo "$1 $(basename "$2"): ok"
}

for mode in simple extended prepared; do
    expect_ok $mode "$work/session.sql"
done
for mode in simple extended prepared; do
    expect_ok $mode "$work/rollback_loop.sql"
done
expect_ok extended "$work/pipeline.sql"
expect_ok prepared "$work/pipeline.sql"

out=$(run extended "$work/late_begin.sql" 1 || true)
if ! grep -q 'ERROR:  duet.test_begin() cannot run within a pipeline' <<<"$out"; then
    echo "--- test_begin after another statement of a pipeline:"
    echo "$out"
    exit 1
fi
echo "late test_begin in a pipeline: refused"

n=$(psql -X -At -d $DB -c "SELECT count(*) FROM t")
[ "$n" = 0 ] || { echo "rows left behind: $n"; exit 1; }
echo "test_session_protocols: ok"
