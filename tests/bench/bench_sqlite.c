/*
 * bench_sqlite.c — figures for the duet SQLite extension, printed side by
 * side with a baseline measured in the same run (see bench_sqlite.sh).
 *
 *   bench_sqlite EXT DIR [MB]
 *
 * 1. Test session: a database of MB megabytes (default 10), 1,000 rows
 *    changed by autocommit UPDATEs inside duet_test_begin(); the time of
 *    duet_test_end() against copying the database file, and against the
 *    alternative mechanism (a backup-API snapshot taken at begin and
 *    restored at end), in rollback-journal and WAL modes.
 * 2. Upsert: duet_upsert() per row (a JSON object bound to a prepared
 *    SELECT duet_upsert('t', ?1), its result read) against a prepared
 *    INSERT ... ON CONFLICT DO UPDATE with bound values, inserts then
 *    updates, in one transaction; and duet_upsert_many() with 100 rows a
 *    call.  Both sides' input is written before the clock starts.
 *
 * Medians of a few runs; nothing is asserted.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define CHANGED_ROWS 1000
#define RUNS 5
#define UPSERT_ROWS 20000

static const char* ext;
static const char* dir;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(sqlite3* db, const char* what) {
    fprintf(stderr, "bench_sqlite: %s: %s\n", what, db ? sqlite3_errmsg(db) : "failed");
    exit(1);
}

static void exec(sqlite3* db, const char* sql) {
    char* err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "bench_sqlite: %s: %s\n", sql, err);
        exit(1);
    }
}

static sqlite3* open_db(const char* path, int load) {
    sqlite3* db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(db, path);
    if (load) {
        char* err = NULL;
        sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, NULL);
        if (sqlite3_load_extension(db, ext, NULL, &err) != SQLITE_OK) {
            fprintf(stderr, "bench_sqlite: load %s: %s\n", ext, err);
            exit(1);
        }
    }
    return db;
}

static int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

static double median(double* v, int n) {
    qsort(v, n, sizeof(double), cmp_double);
    return v[n / 2];
}

/* Copies a file with read/write, as a snapshot by file copy would. */
static double copy_file(const char* from, const char* to) {
    double t0 = now();
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0)
        die(NULL, "open for copy");
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            die(NULL, "write");
    fsync(out);
    close(in);
    close(out);
    return now() - t0;
}

/* A database of about mb megabytes: rows of ~100 bytes. */
static void make_db(const char* path, int mb, const char* journal) {
    unlink(path);
    sqlite3* db = open_db(path, 0);
    char sql[512];
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode = %s", journal);
    exec(db, sql);
    snprintf(sql, sizeof(sql),
             "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);"
             "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %d)"
             " INSERT INTO t SELECT i, printf('%%090d', i), i FROM s;",
             mb * 10000);
    exec(db, sql);
    exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
}

/* n autocommit UPDATEs, spread over the table. */
static void change_some_rows(sqlite3* db, int mb, int n) {
    sqlite3_stmt* s;
    if (sqlite3_prepare_v2(db, "UPDATE t SET v = 'changed', n = n + 1 WHERE id = ?1", -1, &s, NULL))
        die(db, "prepare update");
    for (int i = 0; i < n; i++) {
        sqlite3_bind_int(s, 1, 1 + (int)(((long)i * 7919) % (mb * 10000)));
        if (sqlite3_step(s) != SQLITE_DONE)
            die(db, "update");
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
}

static void change_rows(sqlite3* db, int mb) {
    change_some_rows(db, mb, CHANGED_ROWS);
}

/* The alternative: a backup-API snapshot in memory, restored at the end. */
static void snapshot_restore(const char* path, int mb, double* tSnap, double* tRestore) {
    sqlite3 *db = open_db(path, 0), *mem = open_db(":memory:", 0);
    double t0 = now();
    sqlite3_backup* b = sqlite3_backup_init(mem, "main", db, "main");
    sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    *tSnap = now() - t0;
    change_rows(db, mb);
    t0 = now();
    b = sqlite3_backup_init(db, "main", mem, "main");
    if (sqlite3_backup_step(b, -1) != SQLITE_DONE)
        die(db, "restore");
    sqlite3_backup_finish(b);
    *tRestore = now() - t0;
    sqlite3_close(mem);
    sqlite3_close(db);
}

static void bench_session(int mb, const char* journal) {
    char path[512], copy[512];
    snprintf(path, sizeof(path), "%s/session.db", dir);
    snprintf(copy, sizeof(copy), "%s/copy.db", dir);
    make_db(path, mb, journal);
    double tEnd[RUNS], tBegin[RUNS], tChange[RUNS], tCopy[RUNS], tSnap[RUNS], tRestore[RUNS],
        tPlain[1] = {0};
    for (int r = 0; r < RUNS; r++) {
        sqlite3* db = open_db(path, 1);
        double t0 = now();
        exec(db, "SELECT duet_test_begin()");
        tBegin[r] = now() - t0;
        t0 = now();
        change_rows(db, mb);
        tChange[r] = now() - t0;
        t0 = now();
        exec(db, "SELECT duet_test_end()");
        tEnd[r] = now() - t0;
        /* The same changes without a session, each one committed (once:
        ** with fsync each commit costs milliseconds). */
        if (r == 0) {
            t0 = now();
            change_some_rows(db, mb, CHANGED_ROWS / 10);
            tPlain[0] = (now() - t0) * 10;
        }
        sqlite3_close(db);
        tCopy[r] = copy_file(path, copy);
        snapshot_restore(path, mb, &tSnap[r], &tRestore[r]);
    }
    FILE* f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    double size = (double)ftell(f) / (1024.0 * 1024.0);
    fclose(f);
    double end = median(tEnd, RUNS), cp = median(tCopy, RUNS);
    printf("test session, %.1f MB database, journal_mode=%s, %d changed rows (median of %d):\n",
           size, journal, CHANGED_ROWS, RUNS);
    printf("  duet_test_end()                 %8.2f ms   (goal < 20 ms)\n", end * 1e3);
    printf("  copy of the database file       %8.2f ms   ratio copy/test_end %.1fx\n", cp * 1e3,
           cp / end);
    printf("  backup snapshot / restore       %8.2f / %.2f ms   ratio restore/test_end %.1fx\n",
           median(tSnap, RUNS) * 1e3, median(tRestore, RUNS) * 1e3, median(tRestore, RUNS) / end);
    printf("  duet_test_begin()               %8.2f ms\n", median(tBegin, RUNS) * 1e3);
    printf(
        "  1,000 UPDATEs in the session    %8.2f ms   vs %.0f ms committed one by one (100 x 10)\n",
        median(tChange, RUNS) * 1e3, tPlain[0] * 1e3);
    unlink(copy);
}

/* The rows of one pass, written before the clock starts so that each side
** is timed on the database work alone: bound values for the prepared
** statement, JSON objects for duet.  (Timed, formatting took 3,600
** instructions a row on duet's side, against 1,600 for the other side's
** two snprintf calls: a fifth of what was measured for duet.) */
static struct {
    char name[32], email[48], json[128], many[130];
    int nJson, nMany;
} in[UPSERT_ROWS];

static void make_rows(int base) {
    for (int i = 0; i < UPSERT_ROWS; i++) {
        snprintf(in[i].name, sizeof(in[i].name), "name %d", i + base);
        snprintf(in[i].email, sizeof(in[i].email), "user%d@example.com", i);
        in[i].nJson = snprintf(in[i].json, sizeof(in[i].json),
                               "{\"id\":%d,\"name\":\"%s\",\"email\":\"%s\",\"score\":%g}", i,
                               in[i].name, in[i].email, i * 0.5);
        /* The same object, with the comma that joins it to the previous one
        ** in a duet_upsert_many() array. */
        in[i].nMany = snprintf(in[i].many, sizeof(in[i].many), "%s%s", i % 100 ? "," : "",
                               in[i].json);
    }
}

#define UPSERT_SQL                                                  \
    "INSERT INTO u (id, name, email, score) VALUES (?1, ?2, ?3, ?4) " \
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "          \
    "email = excluded.email, score = excluded.score"

static void bind_row(sqlite3_stmt* s, int i) {
    sqlite3_bind_int(s, 1, i);
    sqlite3_bind_text(s, 2, in[i].name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, in[i].email, -1, SQLITE_STATIC);
    sqlite3_bind_double(s, 4, i * 0.5);
}

/*
** The floor of any SQL function that upserts a row per call:
** bench_floor('u', ?1) binds the row's values, already at hand, to the same
** prepared INSERT ... ON CONFLICT DO UPDATE and runs it, reads no JSON and
** returns '{}'.  What the calling statement and a nested statement cost
** (with duet loaded: its trace callback, and SQLite's copy of a nested
** statement's text for it) is all it adds to the bare statement.
*/
static sqlite3_stmt* floorStmt;
static int floorRow;

static void floor_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    (void)argc, (void)argv;
    bind_row(floorStmt, floorRow++ % UPSERT_ROWS);
    int rc = sqlite3_step(floorStmt);
    sqlite3_reset(floorStmt);
    if (rc == SQLITE_DONE)
        sqlite3_result_text(ctx, "{}", -1, SQLITE_STATIC);
    else
        sqlite3_result_error(ctx, "bench_floor: the upsert failed", -1);
}

/* The timed loops, a function each so that callgrind can count one alone
** (--toggle-collect=time_call, with the bench built -fno-inline). */
static void time_plain(sqlite3* db, sqlite3_stmt* s) {
    for (int i = 0; i < UPSERT_ROWS; i++) {
        bind_row(s, i);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            for (int c = 0; c < 4; c++)
                sqlite3_column_text(s, c);
        if (rc != SQLITE_DONE)
            die(db, "plain upsert");
        sqlite3_reset(s);
    }
}

/* SELECT f('u', ?1) for each row, its result read as RETURNING's is. */
static void time_call(sqlite3* db, sqlite3_stmt* s) {
    for (int i = 0; i < UPSERT_ROWS; i++) {
        sqlite3_bind_text(s, 1, in[i].json, in[i].nJson, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_ROW)
            die(db, sqlite3_sql(s));
        sqlite3_column_text(s, 0);
        sqlite3_reset(s);
    }
}

/* duet_upsert_many, 100 rows a call; the arrays are put together from the
** rows written beforehand (a copy, no formatting). */
static void time_many(sqlite3* db, sqlite3_stmt* s) {
    static char json[100 * 130 + 2];
    for (int i = 0; i < UPSERT_ROWS; i += 100) {
        int n = 0;
        json[n++] = '[';
        for (int j = i; j < i + 100; j++) {
            memcpy(json + n, in[j].many, (size_t)in[j].nMany);
            n += in[j].nMany;
        }
        json[n++] = ']';
        sqlite3_bind_text(s, 1, json, n, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_ROW)
            die(db, "duet_upsert_many");
        sqlite3_column_text(s, 0);
        sqlite3_reset(s);
    }
}

/* Rows per second of one pass of sql (inserts or, with base 1, updates of
** the same ids) in one transaction, timed by loop. */
static double upsert_pass(sqlite3* db, const char* sql, int base,
                          void (*loop)(sqlite3*, sqlite3_stmt*)) {
    sqlite3_stmt* s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL))
        die(db, sql);
    make_rows(base);
    exec(db, "BEGIN");
    double t0 = now();
    loop(db, s);
    double t = now() - t0;
    exec(db, "COMMIT");
    sqlite3_finalize(s);
    return UPSERT_ROWS / t;
}

static void bench_upsert(void) {
    enum { PLAIN, RET, DUET, FLOOR, MANY, N };
    static const char* const sql[N] = {UPSERT_SQL, UPSERT_SQL " RETURNING *",
                                       "SELECT duet_upsert('u', ?1)", "SELECT bench_floor('u', ?1)",
                                       "SELECT duet_upsert_many('u', ?1)"};
    void (*const loop[N])(sqlite3*, sqlite3_stmt*) = {time_plain, time_plain, time_call,
                                                       time_call, time_many};
    char path[512];
    snprintf(path, sizeof(path), "%s/upsert.db", dir);
    double ins[N][RUNS], upd[N][RUNS], mi[N], mu[N];
    for (int r = 0; r < RUNS; r++) {
        unlink(path);
        sqlite3* db = open_db(path, 1);
        exec(db,
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
             "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT, email TEXT, score REAL);");
        if (sqlite3_prepare_v2(db, UPSERT_SQL, -1, &floorStmt, NULL) ||
            sqlite3_create_function(db, "bench_floor", 2, SQLITE_UTF8, NULL, floor_func, NULL,
                                    NULL))
            die(db, "bench_floor");
        /* Inserts into an empty table, then the same ids again: updates. */
        for (int k = 0; k < N; k++) {
            exec(db, "DELETE FROM u");
            floorRow = 0;
            ins[k][r] = upsert_pass(db, sql[k], 0, loop[k]);
            floorRow = 0;
            upd[k][r] = upsert_pass(db, sql[k], 1, loop[k]);
        }
        sqlite3_finalize(floorStmt);
        sqlite3_close(db);
    }
    for (int k = 0; k < N; k++)
        mi[k] = median(ins[k], RUNS), mu[k] = median(upd[k], RUNS);
    printf("upsert, %d rows in one transaction, rows/s (median of %d):\n", UPSERT_ROWS, RUNS);
    printf("  %-44s %9.0f inserts %9.0f updates\n", "prepared INSERT ... ON CONFLICT DO UPDATE",
           mi[PLAIN], mu[PLAIN]);
    printf("  %-44s %9.0f inserts %9.0f updates\n", "the same with RETURNING * (the row back)",
           mi[RET], mu[RET]);
    printf("  %-44s %9.0f inserts %9.0f updates   ratio %.2f / %.2f (goal >= 0.70)\n",
           "duet_upsert() per row", mi[DUET], mu[DUET], mi[DUET] / mi[PLAIN],
           mu[DUET] / mu[PLAIN]);
    printf("  %-44s %9s %9s   ratio to RETURNING * %.2f / %.2f\n", "", "", "",
           mi[DUET] / mi[RET], mu[DUET] / mu[RET]);
    printf("  %-44s %9.0f inserts %9.0f updates   ratio %.2f / %.2f\n",
           "floor: a function that only runs the INSERT", mi[FLOOR], mu[FLOOR],
           mi[FLOOR] / mi[PLAIN], mu[FLOOR] / mu[PLAIN]);
    printf("  %-44s %9.0f inserts %9.0f updates   ratio %.2f / %.2f\n",
           "duet_upsert_many(), 100 rows a call", mi[MANY], mu[MANY], mi[MANY] / mi[PLAIN],
           mu[MANY] / mu[PLAIN]);
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_sqlite EXT DIR [MB]\n");
        return 2;
    }
    ext = argv[1];
    dir = argv[2];
    int mb = argc > 3 ? atoi(argv[3]) : 10;
    /* BENCH_SQLITE_UPSERT_ONLY=1: the upsert figures alone (for callgrind). */
    const char* only = getenv("BENCH_SQLITE_UPSERT_ONLY");
    if (only == NULL || strcmp(only, "1") != 0) {
        bench_session(mb, "DELETE");
        bench_session(mb, "WAL");
    }
    bench_upsert();
    return 0;
}
