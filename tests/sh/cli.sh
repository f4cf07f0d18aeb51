#!/usr/bin/env bash
# The duet CLI against SQLite and the test cluster: query in three formats,
# exec, ping, named connections from DUET_DATABASES, DATABASE_URL, and one-line
# failures with a non-zero exit for a bad URL, a dead server and bad SQL.
# Run by tests/run-suites.sh (DUET_CLI, DUET_PG_URL set); exits 0 when it passes.
set -uo pipefail
CLI=${DUET_CLI:?DUET_CLI is not set}
PG=${DUET_PG_URL:?DUET_PG_URL is not set}
work=$(mktemp -d /tmp/duet-cli.XXXXXX)
trap 'rm -rf "$work"' EXIT
unset DATABASE_URL DUET_DATABASES
fails=0

check() { # NAME EXPECTED ACTUAL
    if [ "$2" == "$3" ]; then
        echo "ok   $1"
    else
        echo "FAIL $1"
        diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed 's/^/     /'
        fails=$((fails + 1))
    fi
}

# check_fail NAME EXIT-CODE STDERR-PATTERN -- command...: exit code, one line matching.
check_fail() {
    local name=$1 want=$2 pattern=$3
    shift 4
    local err rc
    err=$("$@" 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" -eq "$want" ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] &&
        [[ "$err" =~ $pattern ]]; then
        echo "ok   $name"
    else
        echo "FAIL $name: exit $rc (want $want), stderr: $err"
        fails=$((fails + 1))
    fi
}

DB="sqlite:///$work/cli.db"
"$CLI" exec --url "$DB" "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, note TEXT)" >/dev/null

check "exec prints the affected rows" "OK, 2 rows affected" \
    "$("$CLI" exec --url "$DB" "INSERT INTO t (name, note) VALUES ('ada', 'x,y'), ('bob', NULL)")"
check "exec with parameters, json" '{"affected": 1, "last_id": 3}' \
    "$("$CLI" exec --url "$DB" --format json -p name=cy -p note='say "hi"' \
        "INSERT INTO t (name, note) VALUES (:name, :note)")"

check "query, aligned text" " id | name | note
----+------+----------
 1  | ada  | x,y
 2  | bob  |
 3  | cy   | say \"hi\"
(3 rows)" "$("$CLI" query --url "$DB" "SELECT id, name, note FROM t ORDER BY id" | sed 's/ *$//')"

check "query, csv" 'id,name,note
1,ada,"x,y"
2,bob,
3,cy,"say ""hi"""' "$("$CLI" query --url "$DB" --format csv "SELECT id, name, note FROM t ORDER BY id")"

check "query, json" '[
  {"id": "1", "name": "ada", "note": "x,y"},
  {"id": "2", "name": "bob", "note": null}
]' "$("$CLI" query --url "$DB" --format json -a 3 "SELECT id, name, note FROM t WHERE id < ? ORDER BY id")"

check "query, empty json" '[
]' "$("$CLI" query --url "$DB" --format json "SELECT * FROM t WHERE id > 99")"

check "SQL from standard input" "2" \
    "$(echo "SELECT count(*) FROM t WHERE note IS NOT NULL" | "$CLI" query --url "$DB" --format csv | tail -1)"

# Named connections and DATABASE_URL.
export DUET_DATABASES="default=$DB;pg=$PG"
check "--name from DUET_DATABASES (PostgreSQL)" "postgres" \
    "$("$CLI" query --name pg --format csv "SELECT current_user AS u" | tail -1)"
check "the default entry" "3" "$("$CLI" query --format csv "SELECT count(*) FROM t" | tail -1)"
check "DATABASE_URL wins over the default entry" "pg" \
    "$(DATABASE_URL=$PG "$CLI" query --format csv "SELECT 'pg' AS x" | tail -1)"
check_fail "unknown name lists the known ones" 2 'no connection named "nope" in DUET_DATABASES \(known: default, pg\)' \
    -- "$CLI" ping --name nope
unset DUET_DATABASES

check "ping PostgreSQL" "ok" "$("$CLI" ping --url "$PG" | cut -d: -f1)"
check "ping hides the password" "ok: sqlite:///$work/cli.db" "$("$CLI" ping --url "$DB")"
check "exec on PostgreSQL" "OK, 0 rows affected" \
    "$("$CLI" exec --url "$PG" "CREATE TEMP TABLE x (a int)")"
check "query on PostgreSQL, text" " a | b
---+---
 1 | t
(1 row)" "$("$CLI" query --url "$PG" -p n=1 "SELECT :n::int AS a, true AS b")"

# Failures: one line, non-zero exit, never the password.
check_fail "bad URL" 1 '^duet: configuration error: unknown option "bogus"$' \
    -- "$CLI" ping --url "postgresql://u:s3cret@h/db?bogus=1"
check_fail "unsupported backend" 1 'backend not supported: mysql' \
    -- "$CLI" query --url "mysql://u:s3cret@h/db" "SELECT 1"
check_fail "dead server" 1 '^duet: connection error: .*/nonexistent' \
    -- "$CLI" ping --url "postgresql://u:s3cret@/db?host=/nonexistent"
out=$("$CLI" ping --url "postgresql://u:s3cret@/db?host=/nonexistent" 2>&1)
if [[ "$out" == *s3cret* ]]; then echo "FAIL password in: $out"; fails=$((fails + 1)); fi
check_fail "no database" 2 'no database' -- "$CLI" query "SELECT 1"
check_fail "unknown command" 2 'unknown command' -- "$CLI" frobnicate --url "$DB"
check_fail "unknown format" 2 'unknown format' -- "$CLI" query --format xml --url "$DB" "SELECT 1"
err=$("$CLI" query --url "$PG" "SELECT * FROM missing_table" 2>&1 >/dev/null)
check "SQL error, exit 1" "1 duet: syntax error: relation \"missing_table\" does not exist" "$? $err"
"$CLI" --help | grep -q "usage: duet query|exec|ping" && echo "ok   --help" || {
    echo "FAIL --help"
    fails=$((fails + 1))
}

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
