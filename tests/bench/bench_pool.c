/*
 * bench_pool.c — the pool against raw libpq and pgbench, side by side in
 * one run.  Prints figures and ratios; asserts nothing.
 *
 *   bench_pool URL PGBENCH_URL "PGBENCH_COMMAND" SECONDS
 *
 * URL is a scratch database; PGBENCH_URL a pgbench scale-1 database, which
 * PGBENCH_COMMAND (pgbench -S -c 4 ... dbname, without -T) also reads.  The
 * machine is shared and noisy, so each comparison alternates the two sides
 * in rounds and reports the median of the per-round ratios.
 */
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "bench_pool: %s: %s\n", what, duet_errmsg());
    exit(1);
}

static void quiet(void *arg, const char *message) { (void)arg, (void)message; }

/* libpq reads the same URL (duet's pool options are appended only for duet_open). */
static PGconn *raw_connect(const char *url) {
    PGconn *c = PQconnectdb(url);
    PQsetNoticeProcessor(c, quiet, NULL);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "bench_pool: raw connect: %s", PQerrorMessage(c));
        exit(1);
    }
    return c;
}

static void raw_exec(PGconn *c, const char *sql) {
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "bench_pool: %s: %s", sql, PQerrorMessage(c));
        exit(1);
    }
    PQclear(r);
}

/* ------------------------------------------------------------------ */
/* 1. uncontended acquire + SELECT 1 + release vs one raw connection   */
/* ------------------------------------------------------------------ */

static double run_raw(PGconn *c, int n, bool extended) {
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        PGresult *r = extended ? PQexecParams(c, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0)
                               : PQexec(c, "SELECT 1");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) exit(1);
        PQclear(r);
    }
    return now_ms() - t0;
}

static double run_pooled(duet_db *db, int n, bool pin) {
    double t0 = now_ms();
    for (int i = 0; i < n; i++) {
        duet_result *r;
        if (pin && duet_acquire(db) != DUET_OK) die("acquire");
        if (duet_fetch_val(db, "SELECT 1", NULL, 0, &r) != DUET_OK) die("SELECT 1");
        duet_result_free(r);
        if (pin) duet_release(db);
    }
    return now_ms() - t0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

enum { ROUNDS = 20 };

/*
 * Each round opens a fresh raw connection and a fresh pool: where the
 * scheduler places a client and its backend (same CPU or not) decides a
 * round trip's cost on a small VM more than anything either side does, and
 * it sticks for a connection's life.  New connections each round spread
 * that luck over both sides instead of handing it to one for the run.
 */
static void bench_uncontended(const char *url, const char *pool_url) {
    enum { N = 500 };
    double simple[ROUNDS], ext[ROUNDS], pinned[ROUNDS], borrowed[ROUNDS];
    double r_pinned[ROUNDS], r_borrowed[ROUNDS], r_simple[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) { /* interleaved, so drift hits all alike */
        PGconn *c = raw_connect(url);
        duet_db *db;
        if (duet_open(pool_url, &db) != DUET_OK) die("open");
        for (int k = 0; k < 4; k++) { /* each takes each place in turn: the first after a
                                         switch of connection pays for waking it up */
            switch ((r + k) % 4) {
            case 0: simple[r] = run_raw(c, N, false) * 1000.0 / N; break;
            case 1: ext[r] = run_raw(c, N, true) * 1000.0 / N; break;
            case 2: pinned[r] = run_pooled(db, N, true) * 1000.0 / N; break;
            default: borrowed[r] = run_pooled(db, N, false) * 1000.0 / N; break;
            }
        }
        r_pinned[r] = pinned[r] / ext[r];
        r_borrowed[r] = borrowed[r] / ext[r];
        r_simple[r] = pinned[r] / simple[r];
        duet_close(db);
        PQfinish(c);
    }
    printf("uncontended SELECT 1 (%d rounds of %d calls, new connections each round; medians)\n",
           ROUNDS, N);
    printf("  raw libpq PQexec             %7.1f us\n", median(simple, ROUNDS));
    printf("  raw libpq PQexecParams       %7.1f us\n", median(ext, ROUNDS));
    printf("  duet acquire+fetch+release   %7.1f us   ratio %.3f vs PQexecParams (goal <= 1.05), "
           "%.3f vs PQexec\n",
           median(pinned, ROUNDS), median(r_pinned, ROUNDS), median(r_simple, ROUNDS));
    printf("  duet fetch (borrowed)        %7.1f us   ratio %.3f vs PQexecParams\n",
           median(borrowed, ROUNDS), median(r_borrowed, ROUNDS));
}

/* ------------------------------------------------------------------ */
/* 2. pgbench select-only: 8 threads on a pool of 4 vs pgbench -S -c 4 */
/* ------------------------------------------------------------------ */

typedef struct select_arg {
    duet_db *db;
    double until_ms;
    unsigned seed;
    long done;
} select_arg;

static void *select_thread(void *p) {
    select_arg *a = p;
    duet_params *params = duet_params_new();
    while (now_ms() < a->until_ms) {
        duet_result *r;
        duet_params_clear(params);
        duet_bind_int64(params, NULL, 1 + rand_r(&a->seed) % 100000);
        if (duet_fetch_val(a->db, "SELECT abalance FROM pgbench_accounts WHERE aid = $1", params, 0,
                           &r) != DUET_OK)
            die("select-only");
        duet_result_free(r);
        a->done++;
    }
    duet_params_free(params);
    return NULL;
}

static double run_duet_select(duet_db *db, double seconds) {
    pthread_t th[8];
    select_arg args[8];
    double t0 = now_ms();
    for (int i = 0; i < 8; i++) {
        args[i] = (select_arg){db, t0 + seconds * 1000, (unsigned)i * 7919u + 1, 0};
        pthread_create(&th[i], NULL, select_thread, &args[i]);
    }
    long total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += args[i].done;
    }
    return total / ((now_ms() - t0) / 1000.0);
}

/* The same transaction on raw libpq: 4 threads, each with its own connection, no pool. */
typedef struct raw_arg {
    const char *url;
    double until_ms;
    unsigned seed;
    long done;
} raw_arg;

static void *raw_select_thread(void *p) {
    raw_arg *a = p;
    PGconn *c = raw_connect(a->url);
    char aid[16];
    const char *vals[1] = {aid};
    while (now_ms() < a->until_ms) {
        snprintf(aid, sizeof aid, "%d", 1 + rand_r(&a->seed) % 100000);
        PGresult *r = PQexecParams(c, "SELECT abalance FROM pgbench_accounts WHERE aid = $1", 1,
                                   NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) exit(1);
        PQclear(r);
        a->done++;
    }
    PQfinish(c);
    return NULL;
}

static double run_raw_select(const char *url, double seconds) {
    pthread_t th[4];
    raw_arg args[4];
    double t0 = now_ms();
    for (int i = 0; i < 4; i++) {
        args[i] = (raw_arg){url, t0 + seconds * 1000, (unsigned)i * 7919u + 1, 0};
        pthread_create(&th[i], NULL, raw_select_thread, &args[i]);
    }
    long total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += args[i].done;
    }
    return total / ((now_ms() - t0) / 1000.0);
}

static double run_pgbench(const char *cmd, const char *mode, double seconds) {
    char line[4096];
    snprintf(line, sizeof line, "%s -M %s -T %.0f 2>/dev/null", cmd, mode, seconds);
    FILE *f = popen(line, "r");
    double tps = NAN;
    if (!f) return tps;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "tps = ", 6) == 0 && isnan(tps)) tps = atof(line + 6);
    pclose(f);
    return tps;
}

static void bench_select_only(const char *pgbench_url, const char *pgbench_cmd, double seconds) {
    enum { R = 3 };
    char url[1024];
    snprintf(url, sizeof url, "%s&max_connections=4&min_connections=4", pgbench_url);
    duet_db *db;
    if (duet_open(url, &db) != DUET_OK) die("open pgbench database");
    double simple[R], ext[R], ours[R], raw[R], r_simple[R], r_ext[R], r_raw[R];
    for (int r = 0; r < R; r++) {
        simple[r] = run_pgbench(pgbench_cmd, "simple", seconds);
        ours[r] = run_duet_select(db, seconds);
        ext[r] = run_pgbench(pgbench_cmd, "extended", seconds);
        raw[r] = run_raw_select(pgbench_url, seconds);
        r_simple[r] = ours[r] / simple[r];
        r_ext[r] = ours[r] / ext[r];
        r_raw[r] = ours[r] / raw[r];
    }
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    printf("select-only, scale 1 (%d rounds of %.0f s; medians)\n", R, seconds);
    printf("  pgbench -S -c 4 (simple)     %9.0f tps\n", median(simple, R));
    printf("  pgbench -S -c 4 -M extended  %9.0f tps\n", median(ext, R));
    printf("  duet 8 threads, pool of 4    %9.0f tps   ratio %.3f vs simple (goal >= 0.95), "
           "%.3f vs extended\n",
           median(ours, R), median(r_simple, R), median(r_ext, R));
    printf("  raw libpq, 4 threads, 4 conns %8.0f tps   duet's ratio %.3f\n", median(raw, R),
           median(r_raw, R));
    printf("  acquire wait p50 %.3f ms, p99 %.3f ms, max %.3f ms; timeouts %llu\n", s.wait_p50_ms,
           s.wait_p99_ms, s.wait_max_ms, (unsigned long long)s.timeouts);
    duet_close(db);
}

/* ------------------------------------------------------------------ */
/* 3. pooled vs connect-per-query                                      */
/* ------------------------------------------------------------------ */

static void bench_connect_per_query(const char *url, duet_db *db) {
    enum { N = 60 };
    double t0 = now_ms();
    for (int i = 0; i < N; i++) {
        PGconn *c = raw_connect(url);
        raw_exec(c, "SELECT 1");
        PQfinish(c);
    }
    double per_connect = (now_ms() - t0) / N;
    double pooled = run_pooled(db, 2000, false) / 2000;
    printf("connect per query vs pooled\n");
    printf("  PQconnectdb+SELECT 1+PQfinish %8.1f us\n", per_connect * 1000);
    printf("  pooled SELECT 1               %8.1f us   %.0fx faster\n", pooled * 1000,
           per_connect / pooled);
}

/* ------------------------------------------------------------------ */
/* 4. execute_many of 100,000 rows vs PQexecPrepared per row vs COPY   */
/* ------------------------------------------------------------------ */

enum { ROWS = 100000 };

static double many_duet(duet_db *db) {
    duet_params **rows = malloc(sizeof *rows * ROWS);
    char name[32];
    for (int i = 0; i < ROWS; i++) {
        rows[i] = duet_params_new();
        snprintf(name, sizeof name, "name-%d", i);
        duet_bind_int64(rows[i], "id", i);
        duet_bind_text(rows[i], "name", name);
    }
    double t0 = now_ms();
    int64_t n = 0;
    if (duet_execute_many(db, "INSERT INTO bench_many (id, name) VALUES (:id, :name)", rows, ROWS,
                          &n) != DUET_OK)
        die("execute_many");
    double ms = now_ms() - t0;
    for (int i = 0; i < ROWS; i++) duet_params_free(rows[i]);
    free(rows);
    if (n != ROWS) die("execute_many row count");
    return ms;
}

static double many_prepared(PGconn *c) {
    double t0 = now_ms();
    raw_exec(c, "BEGIN");
    PGresult *r = PQprepare(c, "ins", "INSERT INTO bench_many (id, name) VALUES ($1, $2)", 2, NULL);
    PQclear(r);
    char id[16], name[32];
    const char *vals[2] = {id, name};
    for (int i = 0; i < ROWS; i++) {
        snprintf(id, sizeof id, "%d", i);
        snprintf(name, sizeof name, "name-%d", i);
        r = PQexecPrepared(c, "ins", 2, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) exit(1);
        PQclear(r);
    }
    raw_exec(c, "COMMIT");
    raw_exec(c, "DEALLOCATE ins");
    return now_ms() - t0;
}

static double many_copy(PGconn *c) {
    double t0 = now_ms();
    PGresult *r = PQexec(c, "COPY bench_many (id, name) FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN) exit(1);
    PQclear(r);
    char line[64];
    for (int i = 0; i < ROWS; i++) {
        int len = snprintf(line, sizeof line, "%d\tname-%d\n", i, i);
        if (PQputCopyData(c, line, len) != 1) exit(1);
    }
    PQputCopyEnd(c, NULL);
    r = PQgetResult(c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) exit(1);
    PQclear(r);
    return now_ms() - t0;
}

static void bench_execute_many(const char *url, duet_db *db) {
    PGconn *c = raw_connect(url);
    raw_exec(c, "DROP TABLE IF EXISTS bench_many");
    raw_exec(c, "CREATE UNLOGGED TABLE bench_many (id int, name text)");
    double prepared = many_prepared(c);
    raw_exec(c, "TRUNCATE bench_many");
    double duet = many_duet(db);
    raw_exec(c, "TRUNCATE bench_many");
    double copy = many_copy(c);
    raw_exec(c, "DROP TABLE bench_many");
    printf("100,000 inserts\n");
    printf("  PQexecPrepared per row (one transaction) %7.0f ms\n", prepared);
    printf("  duet_execute_many (pipeline)             %7.0f ms   %.1fx faster (goal >= 5x)\n",
           duet, prepared / duet);
    printf("  COPY                                     %7.0f ms   (execute_many: %.1fx)\n",
           copy, duet / copy);
    PQfinish(c);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bench_pool URL PGBENCH_URL PGBENCH_COMMAND SECONDS\n");
        return 2;
    }
    const char *url = argv[1];
    char pool_url[1024];
    snprintf(pool_url, sizeof pool_url, "%s&max_connections=4&min_connections=1", url);
    duet_db *db;
    if (duet_open(pool_url, &db) != DUET_OK) die("open");
    bench_uncontended(url, pool_url);
    bench_select_only(argv[2], argv[3], atof(argv[4]));
    bench_connect_per_query(url, db);
    bench_execute_many(url, db);
    duet_close(db);
    return 0;
}
