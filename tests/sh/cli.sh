#!/usr/bin/env bash
# The duet CLI against SQLite and the test cluster: query in three formats,
# exec, ping, named connections from DUET_DATABASES, DATABASE_URL, and one-line
# failures with a non-zero exit for a bad URL, a dead server and bad SQL; plan
# and upsert on both engines, with and without the duet extension.
# Run by tests/run-suites.sh (DUET_CLI, DUET_PG_URL, DUET_SQLITE_EXT, PGHOST...
# set); creates the extension in the postgres database and drops it again.
# Exits 0 when it passes.
set -uo pipefail
CLI=${DUET_CLI:?DUET_CLI is not set}
PG=${DUET_PG_URL:?DUET_PG_URL is not set}
EXT=${DUET_SQLITE_EXT:?DUET_SQLITE_EXT is not set}
work=$(mktemp -d /tmp/duet-cli.XXXXXX)
pg_ext_before=
cleanup() {
    psql -X -q -d postgres -c 'SET client_min_messages = warning' -c 'DROP TABLE IF EXISTS cli_users' \
        -c 'DROP SEQUENCE IF EXISTS cli_seq' -c 'DROP EXTENSION IF EXISTS duet' \
        ${pg_ext_before:+-c 'CREATE EXTENSION duet'} >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT
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
# plan and upsert on SQLite, without and with the extension (extension=PATH).
"$CLI" exec --url "$DB" "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT)" >/dev/null
DBX="$DB?extension=$EXT"
check "plan on SQLite: EXPLAIN QUERY PLAN" " id | parent | detail
----+--------+-----------------------------------------------------
 3  | 0      | SEARCH u USING INDEX sqlite_autoindex_u_1 (email=?)
(1 row)" "$("$CLI" plan --url "$DB" "SELECT * FROM u WHERE email = 'a''b'" | sed 's/ *$//')"
check "plan on SQLite with the extension: plan, then advice (csv)" "id,parent,detail
2,0,SCAN u

severity,message,suggestion
warning,SCAN u reads every row of u to filter it,CREATE INDEX u_name ON u(name);" \
    "$("$CLI" plan --url "$DBX" --format csv "SELECT * FROM u WHERE name = 'x'")"
check "plan on SQLite, json" '{"plan": [
  {"id": "2", "parent": "0", "detail": "SEARCH u USING INTEGER PRIMARY KEY (rowid=?)"}
], "advice": []}' "$("$CLI" plan --url "$DBX" --format json "SELECT * FROM u WHERE id = 1")"
check "plan SQL from standard input" "2,0,SCAN u" \
    "$(echo "SELECT name FROM u" | "$CLI" plan --url "$DB" --format csv | tail -1)"
check_fail "plan --analyze on SQLite" 2 '^duet: --analyze is for PostgreSQL \(SQLite has no EXPLAIN ANALYZE\)$' \
    -- "$CLI" plan --analyze --url "$DB" "SELECT 1"
check_fail "upsert on SQLite without the extension" 1 \
    '^duet: upsert needs the duet SQLite extension: add extension=PATH \(sqlite_ext/duet.so\) to the URL$' \
    -- "$CLI" upsert --url "$DB" u '{"id": 1}'
check "upsert on SQLite inserts" ' row                                 | inserted
-------------------------------------+----------
 {"id":1,"email":"a@x","name":"ann"} | t
(1 row)' "$("$CLI" upsert --url "$DBX" u '{"id": 1, "email": "a@x", "name": "ann"}' | sed 's/ *$//')"
check "upsert on SQLite, --conflict, json" '[
  {"row": "{\"id\":1,\"email\":\"a@x\",\"name\":\"bo\"}", "inserted": "f"}
]' "$("$CLI" upsert --url "$DBX" --format json --conflict email u '{"email": "a@x", "name": "bo"}')"
check "upsert on SQLite, row from standard input, csv" 'row,inserted
"{""id"":2,""email"":null,""name"":""cy""}",t' \
    "$(echo '{"id": 2, "name": "cy"}' | "$CLI" upsert --url "$DBX" --format csv u)"
check "upsert on SQLite wrote the rows" "1,a@x,bo
2,,cy" "$("$CLI" query --url "$DB" --format csv "SELECT * FROM u ORDER BY id" | tail -n +2)"
err=$("$CLI" upsert --url "$DBX" nosuch '{"id": 1}' 2>&1 >/dev/null)
check "upsert on SQLite, bad table" '1 duet: database error: duet_upsert: relation "nosuch" does not exist
DETAIL: SQLite result code 1 (SQL logic error).' "$? $err"
err=$("$CLI" upsert --url "$DBX" --conflict name u '{"name": "x"}' 2>&1 >/dev/null)
check "upsert on SQLite, bad conflict columns" '1 duet: database error: duet_upsert: no unique index or constraint on "u" matches the conflict columns (name) (unique keys are: (id), (email))
DETAIL: SQLite result code 1 (SQL logic error).' "$? $err"
check_fail "upsert needs a table" 2 '^duet: upsert needs a TABLE$' -- "$CLI" upsert --url "$DBX"
check_fail "upsert takes no -a" 2 '^duet: upsert takes no -p or -a$' -- "$CLI" upsert -a 1 --url "$DBX" u '{}'
check_fail "--analyze is for plan" 2 '^duet: --analyze is for plan$' -- "$CLI" query --analyze --url "$DB" "SELECT 1"
check_fail "--conflict is for upsert" 2 '^duet: --conflict is for upsert$' -- "$CLI" plan --conflict id --url "$DB" "SELECT 1"

# plan and upsert on PostgreSQL, without and then with the extension.
psql -X -qtA -d postgres -c "SELECT 1 FROM pg_extension WHERE extname = 'duet'" | grep -q 1 && pg_ext_before=1
psql -X -q -d postgres -c 'SET client_min_messages = warning' -c 'DROP EXTENSION IF EXISTS duet' -c 'DROP TABLE IF EXISTS cli_users' \
    -c 'DROP SEQUENCE IF EXISTS cli_seq' \
    -c 'CREATE TABLE cli_users (id int PRIMARY KEY, email text UNIQUE, name text)' \
    -c "INSERT INTO cli_users SELECT g, 'u' || g || '@x', 'n' || g FROM generate_series(1, 20000) g" \
    -c 'ANALYZE cli_users' >/dev/null
nocost() { sed -E 's/  \(cost=.*//'; }
count() { "$CLI" query --url "$PG" --format csv "SELECT count(*) FROM cli_users" | tail -1; }
check "plan on PostgreSQL without the extension: EXPLAIN" "QUERY PLAN
Index Scan using cli_users_pkey on cli_users
  Index Cond: (id = 1)" "$("$CLI" plan --url "$PG" --format csv "SELECT * FROM cli_users WHERE id = 1" | nocost)"
check "plan --analyze without the extension: EXPLAIN ANALYZE, rolled back" "Delete on cli_users
20000" "$("$CLI" plan --analyze --url "$PG" --format csv "DELETE FROM cli_users" | sed -n 2p | nocost)
$(count)"
check_fail "upsert on PostgreSQL without the extension" 1 \
    '^duet: upsert needs the duet extension in this database: run CREATE EXTENSION duet$' \
    -- "$CLI" upsert --url "$PG" cli_users '{"id": 1}'
check_fail "plan, bad SQL" 1 '^duet: syntax error: relation "nosuch" does not exist$' \
    -- "$CLI" plan --url "$PG" "SELECT * FROM nosuch"

psql -X -q -d postgres -c 'CREATE EXTENSION IF NOT EXISTS duet' >/dev/null
check "plan on PostgreSQL with the extension: plan_nodes, then plan_advice" "id,parent,node_type,relation
1,,Seq Scan,public.cli_users

severity,node,message,suggestion
warning,1,Seq Scan on public.cli_users reads about 20000 rows to apply the filter (cli_users.name = 'O''Brien'::text),CREATE INDEX ON public.cli_users (name);" \
    "$("$CLI" plan --url "$PG" --format csv "SELECT * FROM cli_users WHERE name = 'O''Brien'" | cut -d, -f1-4)"
check "plan --analyze with the extension: actual rows, rolled back" "id,parent,node_type,actual_rows
1,,Delete,0
2,1,Seq Scan,20000
20000" "$("$CLI" plan --analyze --url "$PG" --format csv "DELETE FROM cli_users" | cut -d, -f1-3,9)
$(count)"
# The statement is explained once: nextval runs once (sequences are never rolled back).
psql -X -q -d postgres -c 'CREATE SEQUENCE cli_seq' >/dev/null
"$CLI" plan --analyze --url "$PG" "SELECT nextval('cli_seq')" >/dev/null
check "plan --analyze with the extension runs the statement once" "2" \
    "$("$CLI" query --url "$PG" --format csv "SELECT nextval('cli_seq')" | tail -1)"
check "plan with the extension: the SQL is bound, ? is an operator" "1,,Result" \
    "$("$CLI" plan --url "$PG" --format csv "SELECT '{\"a\": 1}'::jsonb ? 'a'" | tail -1 | cut -d, -f1-3)"
check_fail "plan with the extension, bad SQL" 1 '^duet: syntax error: relation "nosuch" does not exist$' \
    -- "$CLI" plan --analyze --url "$PG" "SELECT * FROM nosuch"
check_fail "plan with the extension, a parameter" 1 '^duet: syntax error: there is no parameter \$1$' \
    -- "$CLI" plan --url "$PG" 'SELECT $1'
check "plan with the extension, json" '{"plan": [
  {"id": "1", "parent": null, "node_type": "Index Scan", "relation": "public.cli_users", "index_name": "cli_users_pkey", COSTS, "plan_rows": "1", "actual_rows": null, "loops": null, "time_ms": null, "misestimate": null}
], "advice": []}' "$("$CLI" plan --url "$PG" --format json "SELECT * FROM cli_users WHERE id = 1" |
    sed -E 's/"startup_cost": "[^"]*", "total_cost": "[^"]*"/COSTS/')"
check "upsert on PostgreSQL inserts" ' row                                            | inserted
------------------------------------------------+----------
 {"id": 20001, "name": "Ann", "email": "ann@x"} | t
(1 row)' "$("$CLI" upsert --url "$PG" cli_users '{"id": 20001, "email": "ann@x", "name": "Ann"}' | sed 's/ *$//')"
check "upsert on PostgreSQL, --conflict, json" '[
  {"row": "{\"id\": 20001, \"name\": \"Anna\", \"email\": \"ann@x\"}", "inserted": "f"}
]' "$("$CLI" upsert --url "$PG" --format json --conflict email cli_users '{"id": 20001, "email": "ann@x", "name": "Anna"}')"
check "upsert on PostgreSQL, csv" 'row,inserted
"{""id"": 20001, ""name"": ""Anna"", ""email"": ""ann@x""}",f' \
    "$("$CLI" upsert --url "$PG" --format csv --conflict ' email ' cli_users '{"id": 20001, "email": "ann@x"}' 2>&1)"
check_fail "upsert on PostgreSQL, bad table" 1 '^duet: syntax error: relation "nosuch" does not exist$' \
    -- "$CLI" upsert --url "$PG" nosuch '{"id": 1}'
check_fail "upsert on PostgreSQL, a table name is not SQL" 1 '^duet: syntax error: .*' \
    -- "$CLI" upsert --url "$PG" "cli_users; DROP TABLE cli_users" '{"id": 1}'
check "the table survived" "20001" "$(count)"
err=$("$CLI" upsert --url "$PG" --conflict name cli_users '{"name": "x"}' 2>&1 >/dev/null)
check "upsert on PostgreSQL, bad conflict columns" '1 duet: syntax error: no unique index or constraint on "cli_users" matches the conflict columns (name)
HINT: Unique keys are: (id), (email).' "$? $err"
"$CLI" --help | grep -q "usage: duet query|exec|ping" && "$CLI" --help | grep -q "duet upsert" &&
    echo "ok   --help" || {
    echo "FAIL --help"
    fails=$((fails + 1))
}

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
