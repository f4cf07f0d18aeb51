#!/usr/bin/env bash
# Runs every test suite against a throwaway PostgreSQL cluster and SQLite,
# then prints one line "N passed, N failed".  Called by `make check` after
# the build and `make install` of the PostgreSQL extension.
#
#   tests/run-suites.sh [suite...]   suites: regress isolation sqlite client asan sh
#
# Environment: DUET_ONLY=REGEX runs only the tests whose name matches (pg_regress
# and isolation test names, golden script names, client test binaries, shell
# scripts); DUET_TEST_OUT=DIR puts results there instead of tests/out.
#
# The cluster is stopped on every exit path (trap), also when a suite fails.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PGBIN=/usr/lib/postgresql/15/bin
PGXS_DIR=$(dirname "$(dirname "$(pg_config --pgxs)")")
OUT=${DUET_TEST_OUT:-$ROOT/tests/out}
ONLY=${DUET_ONLY:-}
rm -rf "$OUT/results" && mkdir -p "$OUT/results"
passed=0
failed=0
failures=()

selected() { [ -z "$ONLY" ] || [[ "$1" =~ $ONLY ]]; }

record() { # record NAME PASSED FAILED
    passed=$((passed + $2))
    failed=$((failed + $3))
    [ "$3" -gt 0 ] && failures+=("$1")
    printf '%-28s %4d passed, %d failed\n' "$1:" "$2" "$3"
}

cleanup() { [ -n "${DUET_PGDIR:-}" ] && tests/pgcluster.sh stop "$DUET_PGDIR"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

start_cluster() {
    [ -n "${DUET_PGDIR:-}" ] && return 0
    local env
    env=$(tests/pgcluster.sh start) || { echo "cannot start the test cluster" >&2; exit 1; }
    eval "$env"
    export DUET_PGDIR PGHOST PGPORT PGUSER DUET_PG_URL
}

# pg_regress over sql/NAME.sql (SQLite golden scripts are sql/sqlite_*.sql).
suite_regress() {
    local tests=() f
    for f in sql/*.sql; do
        case "$(basename "$f")" in sqlite_*) continue ;; esac
        [ -e "$f" ] && selected "$(basename "$f" .sql)" && tests+=("$(basename "$f" .sql)")
    done
    [ ${#tests[@]} -eq 0 ] && return 0
    start_cluster
    local out=$OUT/results/regress log=$OUT/results/regress.log
    mkdir -p "$out"
    "$PGXS_DIR/test/regress/pg_regress" --inputdir=. --outputdir="$out" \
        --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" --user=postgres \
        --dbname=duet_regress --load-extension=duet "${tests[@]}" >"$log" 2>&1
    report_pg_regress regress "$log" "$out"
}

# pg_isolation_regress over tests/isolation/specs/NAME.spec.
suite_isolation() {
    local tests=() f
    for f in tests/isolation/specs/*.spec; do
        [ -e "$f" ] && selected "$(basename "$f" .spec)" && tests+=("$(basename "$f" .spec)")
    done
    [ ${#tests[@]} -eq 0 ] && return 0
    start_cluster
    local out=$OUT/results/isolation log=$OUT/results/isolation.log
    mkdir -p "$out"
    "$PGXS_DIR/test/isolation/pg_isolation_regress" --inputdir=tests/isolation \
        --outputdir="$out" --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" \
        --user=postgres --dbname=duet_isolation --load-extension=duet "${tests[@]}" >"$log" 2>&1
    report_pg_regress isolation "$log" "$out"
}

report_pg_regress() { # NAME LOG OUTDIR
    local ok bad
    ok=$(grep -cE '\.\.\. ok|^ok ' "$2")
    bad=$(grep -cE '\.\.\. FAILED|^not ok ' "$2")
    if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi # pg_regress itself failed
    if [ "$bad" -gt 0 ]; then
        cat "$2"
        [ -f "$3/regression.diffs" ] && head -300 "$3/regression.diffs"
    fi
    record "$1" "$ok" "$bad"
}

# SQLite golden scripts: sql/sqlite_NAME.sql through the sqlite3 shell with
# the extension loaded, compared with expected/sqlite_NAME.out.
suite_sqlite() {
    local ok=0 bad=0 f name work out
    for f in sql/sqlite_*.sql; do
        [ -e "$f" ] || continue
        name=$(basename "$f" .sql)
        selected "$name" || continue
        work=$(mktemp -d /tmp/duetsq.XXXXXX)
        out=$OUT/results/$name.out
        (cd "$work" && sqlite3 -batch -echo -cmd ".load $ROOT/sqlite_ext/duet" test.db \
            <"$ROOT/$f" >"$out" 2>&1)
        rm -rf "$work"
        if diff -u "expected/$name.out" "$out" >"$OUT/results/$name.diff"; then
            ok=$((ok + 1))
        else
            bad=$((bad + 1))
            echo "--- sqlite golden $name differs:"
            head -100 "$OUT/results/$name.diff"
        fi
    done
    [ $((ok + bad)) -gt 0 ] && record sqlite-golden "$ok" "$bad"
}

# cmocka client tests; BUILD selects the normal or sanitizer build.
run_client_tests() { # NAME BUILD
    local ok=0 bad=0 t log p f
    for t in tests/out/"$2"/test_*; do
        [ -x "$t" ] || continue
        selected "$(basename "$t")" || continue
        log=$OUT/results/$1-$(basename "$t").log
        "$t" >"$log" 2>&1
        local rc=$?
        p=$(sed -n 's/.*\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
        f=$(sed -n 's/.*\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
        p=${p:-0} f=${f:-0}
        if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi # crashed or sanitizer report
        ok=$((ok + p)) bad=$((bad + f))
        if [ "$f" -gt 0 ]; then
            echo "--- $1 $(basename "$t") (exit $rc):"
            grep -vE '^\[ (RUN|       OK) ' "$log" | head -80
        fi
    done
    [ $((ok + bad)) -gt 0 ] && record "$1" "$ok" "$bad"
}

suite_client() {
    start_cluster
    run_client_tests client build
}

suite_asan() {
    start_cluster
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        run_client_tests client-asan build-asan
}

# Shell tests (CLI, psql): tests/sh/NAME.sh, each exits 0 when it passes.
suite_sh() {
    local ok=0 bad=0 t log
    for t in tests/sh/*.sh; do
        [ -e "$t" ] || continue
        selected "$(basename "$t" .sh)" || continue
        start_cluster
        log=$OUT/results/sh-$(basename "$t" .sh).log
        if bash "$t" >"$log" 2>&1; then
            ok=$((ok + 1))
        else
            bad=$((bad + 1))
            echo "--- shell test $(basename "$t"):"
            tail -40 "$log"
        fi
    done
    [ $((ok + bad)) -gt 0 ] && record shell "$ok" "$bad"
}

export DUET_ROOT=$ROOT DUET_SQLITE_EXT=$ROOT/sqlite_ext/duet.so
export DUET_CLI=$ROOT/client/build/duet
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(regress isolation sqlite client asan sh)
for s in "${suites[@]}"; do
    "suite_$s"
done

[ ${#failures[@]} -gt 0 ] && echo "failed suites: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
