/*
 * bench_client.c — libduet against the raw engine APIs, side by side in one run.
 *
 *   fetch_all of 100,000 rows    duet_fetch_all  vs PQexec       (PostgreSQL)
 *                                duet_fetch_all  vs sqlite3_step (SQLite)
 *   SELECT 1 round trip          duet_fetch_all on a pinned connection vs PQexec
 *                                (and vs PQexecParams, the protocol libduet uses)
 *   100,000 inserts              duet_execute_many (pipelined) vs one round trip a row
 *
 * Each figure is the best of ROUNDS alternating runs (the machine is shared
 * and noisy; the minimum is the least disturbed run).  Every value is read
 * on both sides so that neither skips work the other does.  Prints ratios
 * duet / baseline: 1.00 means no overhead.  Asserts nothing.
 *
 *   bench_client PG_URL SQLITE_DIR
 */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet.h"

#define NROWS 100000
#define ROUNDS 9
#define PINGS 3000
#define FETCH_SQL "SELECT id, name, val FROM bench_rows"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *msg) {
    fprintf(stderr, "bench_client: %s: %s\n", what, msg);
    exit(1);
}

static void check(duet_status st, const char *what) {
    if (st != DUET_OK) die(what, duet_errmsg());
}

static volatile size_t sink; /* keeps the reads from being optimized away */

/* ------------------------------------------------------------------ */
/* PostgreSQL                                                         */
/* ------------------------------------------------------------------ */

static PGconn *pg_raw(const char *url) {
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) die("connect", PQerrorMessage(c));
    return c;
}

static void pg_exec(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        die(sql, PQerrorMessage(c));
    PQclear(r);
}

static double raw_pg_fetch(PGconn *c) {
    double t = now_ms();
    PGresult *r = PQexec(c, FETCH_SQL);
    if (PQntuples(r) != NROWS) die("raw fetch", PQerrorMessage(c));
    size_t n = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        n += (size_t)atoll(PQgetvalue(r, i, 0));
        n += strlen(PQgetvalue(r, i, 1));
        n += (size_t)atof(PQgetvalue(r, i, 2));
    }
    PQclear(r);
    sink = n;
    return now_ms() - t;
}

static double duet_fetch(duet_db *db) {
    double t = now_ms();
    duet_result *r;
    check(duet_fetch_all(db, FETCH_SQL, NULL, &r), "duet fetch");
    if (duet_result_nrows(r) != NROWS) die("duet fetch", "row count");
    size_t n = 0;
    for (size_t i = 0; i < duet_result_nrows(r); i++) {
        int64_t id;
        double v;
        duet_result_int64(r, i, 0, &id);
        duet_result_double(r, i, 2, &v);
        n += (size_t)id + strlen(duet_result_text(r, i, 1)) + (size_t)v;
    }
    duet_result_free(r);
    sink = n;
    return now_ms() - t;
}

static double raw_pings(PGconn *c, bool params) {
    double t = now_ms();
    for (int i = 0; i < PINGS; i++) {
        PGresult *r = params ? PQexecParams(c, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0)
                             : PQexec(c, "SELECT 1");
        sink = strlen(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    return (now_ms() - t) * 1e3 / PINGS; /* µs */
}

static double duet_pings(duet_db *db) {
    double t = now_ms();
    for (int i = 0; i < PINGS; i++) {
        duet_result *r;
        check(duet_fetch_all(db, "SELECT 1", NULL, &r), "duet ping");
        sink = strlen(duet_result_text(r, 0, 0));
        duet_result_free(r);
    }
    return (now_ms() - t) * 1e3 / PINGS;
}

static duet_params **make_rows(size_t n) {
    duet_params **rows = malloc(n * sizeof *rows);
    char name[32];
    for (size_t i = 0; i < n; i++) {
        rows[i] = duet_params_new();
        snprintf(name, sizeof name, "name-%zu", i);
        duet_bind_int64(rows[i], "id", (int64_t)i);
        duet_bind_text(rows[i], "name", name);
        duet_bind_double(rows[i], "val", i * 0.5);
    }
    return rows;
}

static void free_rows(duet_params **rows, size_t n) {
    for (size_t i = 0; i < n; i++) duet_params_free(rows[i]);
    free(rows);
}

#define INSERT_SQL "INSERT INTO bench_ins (id, name, val) VALUES (:id, :name, :val)"

/* 100,000 pipelined inserts vs a sample of single-statement inserts, per row. */
static void bench_inserts(duet_db *db) {
    enum { SAMPLE = 5000 };
    duet_params **rows = make_rows(NROWS);
    check(duet_execute(db, "CREATE TEMP TABLE bench_ins (id int, name text, val float8)", NULL,
                       NULL, NULL), "create");
    double t = now_ms();
    int64_t affected;
    check(duet_execute_many(db, INSERT_SQL, rows, NROWS, &affected), "execute_many");
    double many = (now_ms() - t) * 1e3 / NROWS;
    t = now_ms();
    for (size_t i = 0; i < SAMPLE; i++) check(duet_execute(db, INSERT_SQL, rows[i], NULL, NULL), "insert");
    double single = (now_ms() - t) * 1e3 / SAMPLE;
    printf("  %-44s %8.2f µs/row   one round trip a row %8.2f µs/row   %.1fx faster\n",
           "execute_many, 100,000 inserts (pipelined)", many, single, single / many);
    free_rows(rows, NROWS);
}

static void bench_pg(const char *url) {
    PGconn *raw = pg_raw(url);
    pg_exec(raw, "DROP TABLE IF EXISTS bench_rows");
    pg_exec(raw, "CREATE TABLE bench_rows AS SELECT i AS id, 'name-' || i AS name, i * 0.5::float8 AS val "
                 "FROM generate_series(1, 100000) i");
    pg_exec(raw, "VACUUM ANALYZE bench_rows");

    char durl[1024];
    snprintf(durl, sizeof durl, "%s%smin_connections=1&max_connections=2", url, strchr(url, '?') ? "&" : "?");
    duet_db *db;
    check(duet_open(durl, &db), "duet_open");
    check(duet_acquire(db), "duet_acquire"); /* one persistent connection, as the raw side */

    double raw_best = 1e18, duet_best = 1e18;
    for (int r = 0; r < ROUNDS; r++) {
        double a = raw_pg_fetch(raw), b = duet_fetch(db);
        if (a < raw_best) raw_best = a;
        if (b < duet_best) duet_best = b;
    }
    printf("  %-44s %8.1f ms   PQexec %8.1f ms   ratio %.2f\n", "fetch_all 100,000 rows, PostgreSQL",
           duet_best, raw_best, duet_best / raw_best);

    double simple = 1e18, params = 1e18, duet = 1e18;
    for (int r = 0; r < ROUNDS; r++) {
        double a = raw_pings(raw, false), b = raw_pings(raw, true), c = duet_pings(db);
        if (a < simple) simple = a;
        if (b < params) params = b;
        if (c < duet) duet = c;
    }
    printf("  %-44s %8.1f µs   PQexec %8.1f µs   ratio %.2f\n", "SELECT 1 round trip, pinned connection",
           duet, simple, duet / simple);
    printf("  %-44s %8s      PQexecParams %6.1f µs   ratio %.2f\n", "  (same, against the extended protocol)",
           "", params, duet / params);

    bench_inserts(db);
    check(duet_release(db), "duet_release");
    duet_close(db);
    pg_exec(raw, "DROP TABLE bench_rows");
    PQfinish(raw);
}

/* ------------------------------------------------------------------ */
/* SQLite                                                             */
/* ------------------------------------------------------------------ */

static double raw_sqlite_fetch(sqlite3 *db) {
    double t = now_ms();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, FETCH_SQL, -1, &st, NULL) != SQLITE_OK) die("prepare", sqlite3_errmsg(db));
    size_t n = 0, rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        n += (size_t)sqlite3_column_int64(st, 0);
        n += strlen((const char *)sqlite3_column_text(st, 1));
        n += (size_t)sqlite3_column_double(st, 2);
        rows++;
    }
    sqlite3_finalize(st);
    if (rows != NROWS) die("raw sqlite fetch", "row count");
    sink = n;
    return now_ms() - t;
}

static void bench_sqlite(const char *dir) {
    char path[512], url[600];
    snprintf(path, sizeof path, "%s/bench.db", dir);
    snprintf(url, sizeof url, "sqlite:///%s?min_connections=1&max_connections=1", path);
    duet_db *db;
    check(duet_open(url, &db), "duet_open sqlite");
    check(duet_execute(db, "DROP TABLE IF EXISTS bench_rows", NULL, NULL, NULL), "drop");
    check(duet_execute(db, "CREATE TABLE bench_rows (id INTEGER, name TEXT, val REAL)", NULL, NULL, NULL),
          "create");
    duet_params **rows = make_rows(NROWS);
    double t = now_ms();
    check(duet_execute_many(db, "INSERT INTO bench_rows VALUES (:id, :name, :val)", rows, NROWS, NULL),
          "fill");
    double fill = now_ms() - t;
    free_rows(rows, NROWS);

    sqlite3 *raw;
    if (sqlite3_open_v2(path, &raw, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) die("open", path);
    sqlite3_exec(raw, "PRAGMA cache_size = 10000", NULL, NULL, NULL);
    double raw_best = 1e18, duet_best = 1e18;
    for (int r = 0; r < ROUNDS; r++) {
        double a = raw_sqlite_fetch(raw), b = duet_fetch(db);
        if (a < raw_best) raw_best = a;
        if (b < duet_best) duet_best = b;
    }
    printf("  %-44s %8.1f ms   sqlite3_step %4.1f ms   ratio %.2f\n", "fetch_all 100,000 rows, SQLite",
           duet_best, raw_best, duet_best / raw_best);
    printf("  %-44s %8.2f µs/row\n", "execute_many, 100,000 inserts, SQLite", fill * 1e3 / NROWS);
    sqlite3_close(raw);
    duet_close(db);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bench_client PG_URL SQLITE_DIR\n");
        return 2;
    }
    printf("libduet vs raw engine APIs (best of %d runs; ratio = duet / baseline, goal <= 1.10)\n", ROUNDS);
    bench_sqlite(argv[2]);
    bench_pg(argv[1]);
    return 0;
}
