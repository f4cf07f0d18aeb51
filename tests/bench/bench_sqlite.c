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
 * 2. Upsert: duet_upsert() per row (a JSON object built per row, bound to a
 *    prepared SELECT duet_upsert('t', ?1)) against a prepared
 *    INSERT ... ON CONFLICT DO UPDATE with bound values, inserts then
 *    updates, in one transaction; and duet_upsert_many() with 100 rows a call.
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

/* Rows per second of a prepared INSERT ... ON CONFLICT DO UPDATE; with
** returning, it also gives back the row (RETURNING *, every column read),
** which is what duet_upsert() returns. */
static double upsert_plain(sqlite3* db, int base, int returning) {
    sqlite3_stmt* s;
    char sql[400];
    snprintf(sql, sizeof(sql), "%s%s",
             "INSERT INTO u (id, name, email, score) VALUES (?1, ?2, ?3, ?4) "
             "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
             "email = excluded.email, score = excluded.score",
             returning ? " RETURNING *" : "");
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL))
        die(db, "prepare plain upsert");
    char name[32], email[48];
    exec(db, "BEGIN");
    double t0 = now();
    for (int i = 0; i < UPSERT_ROWS; i++) {
        snprintf(name, sizeof(name), "name %d", i + base);
        snprintf(email, sizeof(email), "user%d@example.com", i);
        sqlite3_bind_int(s, 1, i);
        sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, email, -1, SQLITE_STATIC);
        sqlite3_bind_double(s, 4, i * 0.5);
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW)
            for (int c = 0; c < 4; c++)
                sqlite3_column_text(s, c);
        if (rc != SQLITE_DONE)
            die(db, "plain upsert");
        sqlite3_reset(s);
    }
    double t = now() - t0;
    exec(db, "COMMIT");
    sqlite3_finalize(s);
    return UPSERT_ROWS / t;
}

/* Rows per second of duet_upsert(), JSON built per row. */
static double upsert_duet(sqlite3* db, int base) {
    sqlite3_stmt* s;
    if (sqlite3_prepare_v2(db, "SELECT duet_upsert('u', ?1)", -1, &s, NULL))
        die(db, "prepare duet_upsert");
    char json[256];
    exec(db, "BEGIN");
    double t0 = now();
    for (int i = 0; i < UPSERT_ROWS; i++) {
        int n = snprintf(
            json, sizeof(json),
            "{\"id\":%d,\"name\":\"name %d\",\"email\":\"user%d@example.com\",\"score\":%g}", i,
            i + base, i, i * 0.5);
        sqlite3_bind_text(s, 1, json, n, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_ROW)
            die(db, "duet_upsert");
        sqlite3_reset(s);
    }
    double t = now() - t0;
    exec(db, "COMMIT");
    sqlite3_finalize(s);
    return UPSERT_ROWS / t;
}

/* Rows per second of duet_upsert_many(), 100 rows a call. */
static double upsert_many(sqlite3* db, int base) {
    sqlite3_stmt* s;
    if (sqlite3_prepare_v2(db, "SELECT duet_upsert_many('u', ?1)", -1, &s, NULL))
        die(db, "prepare many");
    static char json[100 * 128];
    exec(db, "BEGIN");
    double t0 = now();
    for (int i = 0; i < UPSERT_ROWS; i += 100) {
        int n = 0;
        json[n++] = '[';
        for (int j = i; j < i + 100; j++)
            n += snprintf(
                json + n, sizeof(json) - n,
                "%s{\"id\":%d,\"name\":\"name %d\",\"email\":\"user%d@example.com\",\"score\":%g}",
                j > i ? "," : "", j, j + base, j, j * 0.5);
        json[n++] = ']';
        sqlite3_bind_text(s, 1, json, n, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_ROW)
            die(db, "duet_upsert_many");
        sqlite3_reset(s);
    }
    double t = now() - t0;
    exec(db, "COMMIT");
    sqlite3_finalize(s);
    return UPSERT_ROWS / t;
}

static void bench_upsert(void) {
    char path[512];
    snprintf(path, sizeof(path), "%s/upsert.db", dir);
    double plainIns[RUNS], plainUpd[RUNS], retIns[RUNS], retUpd[RUNS], duetIns[RUNS], duetUpd[RUNS],
        manyIns[RUNS], manyUpd[RUNS];
    for (int r = 0; r < RUNS; r++) {
        unlink(path);
        sqlite3* db = open_db(path, 1);
        exec(db,
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
             "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT, email TEXT, score REAL);");
        /* Inserts into an empty table, then the same ids again: updates. */
        exec(db, "DELETE FROM u");
        plainIns[r] = upsert_plain(db, 0, 0);
        plainUpd[r] = upsert_plain(db, 1, 0);
        exec(db, "DELETE FROM u");
        retIns[r] = upsert_plain(db, 0, 1);
        retUpd[r] = upsert_plain(db, 1, 1);
        exec(db, "DELETE FROM u");
        duetIns[r] = upsert_duet(db, 0);
        duetUpd[r] = upsert_duet(db, 1);
        exec(db, "DELETE FROM u");
        manyIns[r] = upsert_many(db, 0);
        manyUpd[r] = upsert_many(db, 1);
        sqlite3_close(db);
    }
    double pi = median(plainIns, RUNS), pu = median(plainUpd, RUNS);
    double di = median(duetIns, RUNS), du = median(duetUpd, RUNS);
    double mi = median(manyIns, RUNS), mu = median(manyUpd, RUNS);
    double ri = median(retIns, RUNS), ru = median(retUpd, RUNS);
    printf("upsert, %d rows in one transaction, rows/s (median of %d):\n", UPSERT_ROWS, RUNS);
    printf("  %-44s %9.0f inserts %9.0f updates\n", "prepared INSERT ... ON CONFLICT DO UPDATE", pi,
           pu);
    printf("  %-44s %9.0f inserts %9.0f updates\n", "the same with RETURNING * (the row back)", ri,
           ru);
    printf("  %-44s %9.0f inserts %9.0f updates   ratio %.2f / %.2f (goal >= 0.70)\n",
           "duet_upsert() per row, JSON built per row", di, du, di / pi, du / pu);
    printf("  %-44s %9s %9s   ratio to RETURNING * %.2f / %.2f\n", "", "", "", di / ri, du / ru);
    printf("  %-44s %9.0f inserts %9.0f updates   ratio %.2f / %.2f\n",
           "duet_upsert_many(), 100 rows a call", mi, mu, mi / pi, mu / pu);
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_sqlite EXT DIR [MB]\n");
        return 2;
    }
    ext = argv[1];
    dir = argv[2];
    int mb = argc > 3 ? atoi(argv[3]) : 10;
    bench_session(mb, "DELETE");
    bench_session(mb, "WAL");
    bench_upsert();
    return 0;
}
