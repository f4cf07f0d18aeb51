#!/usr/bin/env bash
# Benchmarks of duet.upsert, duet.upsert_many and duet.explain against the
# hand-written SQL they replace, measured side by side in one run and printed
# as ratios (duet / baseline throughput, or duet / baseline time for explain).
#
#   tests/bench/run.sh runs it against a throwaway cluster (PGHOST, PGPORT
#   and PGUSER exported).  BENCH_SECONDS sets each pgbench run (default 2),
#   BENCH_ROUNDS how often the contenders alternate (default 5; the best
#   round of each counts, which filters out other load on the machine and
#   the luck of where each new connection's backend is scheduled, which on
#   a 2-core VM moves a single client's figures by 20% and more),
#   BENCH_ROWS the size of the bulk upsert (default 100000).
#
# Goals (issue 5): single-row upsert >= 0.8 of a prepared INSERT ... ON
# CONFLICT DO UPDATE; bulk upsert >= 0.9 of INSERT ... SELECT FROM
# jsonb_to_recordset(...) ON CONFLICT; duet.explain <= 1.2x the time of
# EXPLAIN (FORMAT JSON).  Nothing is asserted: a benchmark is not a test.
set -euo pipefail
PGBENCH=/usr/lib/postgresql/15/bin/pgbench
SECONDS_EACH=${BENCH_SECONDS:-2}
ROUNDS=${BENCH_ROUNDS:-5}
ROWS=${BENCH_ROWS:-100000}
DB=duet_bench_upsert
WORK=$(mktemp -d /tmp/duetbench.XXXXXX)
trap 'rm -rf "$WORK"; psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true' EXIT

q() { psql -X -q -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
q <<SQL
CREATE EXTENSION duet;
CREATE TABLE single_duet (id int PRIMARY KEY, name text, score int);
CREATE TABLE single_base (id int PRIMARY KEY, name text, score int);
CREATE TABLE bulk (id int PRIMARY KEY, name text, score int, at timestamptz);
-- the bulk input: one jsonb array of $ROWS objects, half of them new
CREATE TABLE bulk_src AS
    SELECT jsonb_agg(jsonb_build_object('id', g, 'name', 'n' || g, 'score', g % 1000,
                                        'at', '2024-01-01'::timestamptz + g * interval '1 s')) AS j
      FROM generate_series(1, $ROWS) g;
INSERT INTO bulk SELECT g, 'old', 0, now() FROM generate_series(1, $ROWS / 2) g;
SQL

# throughput (tps) of a pgbench script, from its "tps = N" line
tps() { # MODE FILE
    "$PGBENCH" -n -M "$1" -T "$SECONDS_EACH" -f "$2" "$DB" 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
# average latency (ms) of TIMES runs of a one-transaction script
latency() { # FILE TIMES
    "$PGBENCH" -n -M simple -t "$2" -f "$1" "$DB" 2>/dev/null |
        sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == 0 || b < a ? b : a) }'; }
# best throughput of each script over ROUNDS alternating rounds
best_tps() { # MODE FILE...
    local mode=$1 i f
    shift
    declare -gA BEST=()
    for f in "$@"; do BEST[$f]=0; done
    for ((i = 0; i < ROUNDS; i++)); do
        for f in "$@"; do BEST[$f]=$(max "${BEST[$f]}" "$(tps "$mode" "$f")"); done
    done
}

# --- single-row upsert: 10,000 keys, so most calls update ---
cat >"$WORK/single_duet.sql" <<'SQL'
\set id random(1, 10000)
SELECT duet.upsert('single_duet', jsonb_build_object('id', :id::int, 'name', 'name', 'score', :id::int));
SQL
cat >"$WORK/single_base.sql" <<'SQL'
\set id random(1, 10000)
INSERT INTO single_base AS t (id, name, score) VALUES (:id, 'name', :id)
    ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, score = EXCLUDED.score
    RETURNING to_jsonb(t.*), t.xmax = 0;
SQL
cat >"$WORK/single_bare.sql" <<'SQL'
\set id random(1, 10000)
INSERT INTO single_base (id, name, score) VALUES (:id, 'name', :id)
    ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, score = EXCLUDED.score;
SQL
tps prepared "$WORK/single_duet.sql" >/dev/null # warm up both tables
tps prepared "$WORK/single_base.sql" >/dev/null
best_tps prepared "$WORK/single_duet.sql" "$WORK/single_base.sql" "$WORK/single_bare.sql"
duet=${BEST[$WORK/single_duet.sql]} base=${BEST[$WORK/single_base.sql]} bare=${BEST[$WORK/single_bare.sql]}
echo "single-row upsert, pgbench -M prepared, best of $ROUNDS runs of ${SECONDS_EACH}s:"
echo "  duet.upsert                                    $duet tps"
echo "  INSERT ... ON CONFLICT DO UPDATE RETURNING     $base tps"
echo "  INSERT ... ON CONFLICT DO UPDATE               $bare tps"
echo "  ratio duet / RETURNING: $(ratio "$duet" "$base")   duet / bare: $(ratio "$duet" "$bare")   (goal >= 0.8)"

# --- bulk upsert of one jsonb array ---
cat >"$WORK/bulk_duet.sql" <<'SQL'
SELECT count(*) FROM duet.upsert_many('bulk', (SELECT j FROM bulk_src));
SQL
cat >"$WORK/bulk_flags.sql" <<'SQL'
SELECT count(*) FROM duet.upsert_many('bulk', (SELECT j FROM bulk_src), return_rows => false);
SQL
cat >"$WORK/bulk_base.sql" <<'SQL'
WITH u AS (
    INSERT INTO bulk AS t
    SELECT * FROM jsonb_to_recordset((SELECT j FROM bulk_src))
                  AS r(id int, name text, score int, at timestamptz)
        ON CONFLICT (id) DO UPDATE
        SET name = EXCLUDED.name, score = EXCLUDED.score, at = EXCLUDED.at
    RETURNING to_jsonb(t.*), t.xmax = 0)
SELECT count(*) FROM u;
SQL
cat >"$WORK/bulk_bare.sql" <<'SQL'
INSERT INTO bulk AS t
SELECT * FROM jsonb_to_recordset((SELECT j FROM bulk_src))
              AS r(id int, name text, score int, at timestamptz)
    ON CONFLICT (id) DO UPDATE
    SET name = EXCLUDED.name, score = EXCLUDED.score, at = EXCLUDED.at;
SQL
# alternate, vacuuming before each run so that neither pays for the other's bloat
d=0 f=0 b=0 r=0
for ((i = 0; i < ROUNDS; i++)); do
    q -c "VACUUM bulk" && d=$(min "$d" "$(latency "$WORK/bulk_duet.sql" 1)")
    q -c "VACUUM bulk" && f=$(min "$f" "$(latency "$WORK/bulk_flags.sql" 1)")
    q -c "VACUUM bulk" && b=$(min "$b" "$(latency "$WORK/bulk_base.sql" 1)")
    q -c "VACUUM bulk" && r=$(min "$r" "$(latency "$WORK/bulk_bare.sql" 1)")
done
echo "bulk upsert of $ROWS rows from one jsonb array, best of $ROUNDS runs (ms):"
echo "  duet.upsert_many                               $d"
echo "  INSERT ... jsonb_to_recordset ... RETURNING    $b"
echo "  duet.upsert_many(return_rows => false)         $f"
echo "  INSERT ... jsonb_to_recordset ON CONFLICT      $r"
echo "  throughput ratio duet / RETURNING: $(ratio "$b" "$d")   return_rows false / bare: $(ratio "$r" "$f")   (goal >= 0.9)"

# --- duet.explain vs EXPLAIN (FORMAT JSON) ---
cat >"$WORK/explain_duet.sql" <<'SQL'
SELECT duet.explain('SELECT s.name, count(*) FROM single_duet s JOIN bulk b ON b.id = s.id WHERE s.score > 10 GROUP BY s.name');
SQL
cat >"$WORK/explain_base.sql" <<'SQL'
EXPLAIN (FORMAT JSON) SELECT s.name, count(*) FROM single_duet s JOIN bulk b ON b.id = s.id WHERE s.score > 10 GROUP BY s.name;
SQL
# VACUUM too: the bulk upserts left 100,000 dead rows in bulk, and the
# autovacuum they call for would otherwise start within a minute, in the
# middle of the rounds, and slow whichever side it met.
q -c "VACUUM ANALYZE"
best_tps simple "$WORK/explain_duet.sql" "$WORK/explain_base.sql"
duet=${BEST[$WORK/explain_duet.sql]} base=${BEST[$WORK/explain_base.sql]}
echo "explain of a join, pgbench -M simple, best of $ROUNDS runs of ${SECONDS_EACH}s:"
echo "  duet.explain                                   $duet tps"
echo "  EXPLAIN (FORMAT JSON)                          $base tps"
echo "  time ratio duet / EXPLAIN: $(ratio "$base" "$duet")   (goal <= 1.2)"

# --- the same with analyze: duet's fixed cost against a plan that runs ---
sed 's/duet.explain(\(.*\))/duet.explain(\1, true)/' "$WORK/explain_duet.sql" >"$WORK/analyze_duet.sql"
sed 's/EXPLAIN (FORMAT JSON)/EXPLAIN (ANALYZE, FORMAT JSON)/' "$WORK/explain_base.sql" >"$WORK/analyze_base.sql"
ROUNDS=2 best_tps simple "$WORK/analyze_duet.sql" "$WORK/analyze_base.sql"
duet=${BEST[$WORK/analyze_duet.sql]} base=${BEST[$WORK/analyze_base.sql]}
echo "explain analyze of the same join (rolled back in a subtransaction), best of 2 runs of ${SECONDS_EACH}s:"
echo "  duet.explain(..., analyze => true)             $duet tps"
echo "  EXPLAIN (ANALYZE, FORMAT JSON)                 $base tps"
echo "  time ratio duet / EXPLAIN: $(ratio "$base" "$duet")   (goal <= 1.2)"
