/*
 * test_pool.c — the pool on real engines: many threads, acquire_timeout and
 * FIFO order, max_lifetime, idle_timeout, test_before_acquire after the
 * server killed a pooled connection, leak warnings, thread hand-off,
 * statistics, and SQLite's shared :memory: database.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/types.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Many threads on a small pool                                        */
/* ------------------------------------------------------------------ */

typedef struct stress_arg {
    duet_db *db;
    int iters;
    int index;
    int failures;
    char first_error[256];
} stress_arg;

static void *stress_thread(void *p) {
    stress_arg *a = p;
    for (int i = 0; i < a->iters; i++) {
        /* every other thread pins explicitly, the others borrow per call */
        bool pin = (a->index + i) % 2 == 0;
        duet_status st = pin ? duet_acquire(a->db) : DUET_OK;
        duet_result *r = NULL;
        int64_t v = 0;
        if (st == DUET_OK) st = duet_fetch_val(a->db, "SELECT 1", NULL, 0, &r);
        if (st == DUET_OK) st = duet_result_int64(r, 0, 0, &v);
        duet_result_free(r);
        if (pin && duet_release(a->db) != DUET_OK && st == DUET_OK) st = DUET_ERR_MISUSE;
        if (st != DUET_OK || v != 1) {
            if (a->failures++ == 0)
                snprintf(a->first_error, sizeof a->first_error, "%s", duet_errmsg());
        }
    }
    return NULL;
}

static int stress_iters(void) {
    const char *env = getenv("DUET_STRESS_ITERS");
    if (env && atoi(env) > 0) return atoi(env);
    return TEST_UNDER_ASAN ? 150 : 1000; /* ASan makes every call several times slower */
}

static void run_stress(const char *url, int nthreads) {
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    int iters = stress_iters();
    pthread_t th[64];
    stress_arg args[64];
    for (int i = 0; i < nthreads; i++) {
        args[i] = (stress_arg){.db = db, .iters = iters, .index = i};
        assert_int_equal(pthread_create(&th[i], NULL, stress_thread, &args[i]), 0);
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        if (args[i].failures) fail_msg("thread %d: %d failures, first: %s", i, args[i].failures,
                                       args[i].first_error);
    }
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.in_use, 0);
    assert_int_equal(s.waiting, 0);
    assert_true(s.size <= 8);
    assert_int_equal(s.idle, s.size);
    assert_int_equal(s.opened - s.closed, s.size);
    assert_int_equal(s.acquired, (uint64_t)nthreads * (uint64_t)iters);
    assert_int_equal(s.timeouts, 0);
    assert_true(s.wait_p50_ms <= s.wait_p99_ms && s.wait_p99_ms <= s.wait_max_ms);
    duet_close(db);
}

static void test_stress_pg(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=8&min_connections=1&acquire_timeout=60");
    run_stress(url, 64);
    free(url);
}

static void test_stress_sqlite_memory(void **state) {
    (void)state;
    run_stress("sqlite:///:memory:?max_connections=8&min_connections=1&acquire_timeout=60", 64);
}

/* ------------------------------------------------------------------ */
/* acquire_timeout and FIFO order                                      */
/* ------------------------------------------------------------------ */

typedef struct ping_arg {
    duet_db *db;
    duet_status st;
    double elapsed_ms;
    char msg[512];
} ping_arg;

static void *ping_thread(void *p) {
    ping_arg *a = p;
    double t0 = test_now_ms();
    a->st = duet_ping(a->db);
    a->elapsed_ms = test_now_ms() - t0;
    snprintf(a->msg, sizeof a->msg, "%s", duet_errmsg());
    return NULL;
}

static void test_acquire_timeout(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=1&min_connections=0&acquire_timeout=0.3");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_acquire(db)); /* the only connection */
    ping_arg a = {.db = db};
    pthread_t th;
    pthread_create(&th, NULL, ping_thread, &a);
    pthread_join(th, NULL);
    assert_int_equal(a.st, DUET_ERR_TIMEOUT);
    assert_true(a.elapsed_ms >= 250 && a.elapsed_ms < 5000);
    assert_non_null(strstr(a.msg, "pool \"default\" timed out after"));
    assert_non_null(strstr(a.msg, "max_connections 1, 1 open, 1 in use"));
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.timeouts, 1);
    assert_duet_ok(duet_release(db));
    pthread_create(&th, NULL, ping_thread, &a);
    pthread_join(th, NULL);
    assert_int_equal(a.st, DUET_OK);
    duet_close(db);
    free(url);
}

typedef struct fifo_arg {
    duet_db *db;
    pthread_mutex_t *mu;
    int *next_rank;
    int rank;
} fifo_arg;

static void *fifo_thread(void *p) {
    fifo_arg *a = p;
    if (duet_acquire(a->db) != DUET_OK) return NULL;
    pthread_mutex_lock(a->mu);
    a->rank = (*a->next_rank)++;
    pthread_mutex_unlock(a->mu);
    duet_release(a->db);
    return NULL;
}

static void wait_for_waiters(duet_db *db, size_t n) {
    duet_pool_stats s;
    for (int i = 0; i < 500; i++) {
        duet_pool_stats_get(db, &s);
        if (s.waiting == n) return;
        test_sleep_ms(5);
    }
    fail_msg("expected %zu waiting threads, saw %zu", n, s.waiting);
}

static void test_fifo_order(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=1&min_connections=0&acquire_timeout=20");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_acquire(db));
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    int next_rank = 0;
    fifo_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) { /* queued one after another */
        args[i] = (fifo_arg){.db = db, .mu = &mu, .next_rank = &next_rank, .rank = -1};
        pthread_create(&th[i], NULL, fifo_thread, &args[i]);
        wait_for_waiters(db, (size_t)i + 1);
    }
    assert_duet_ok(duet_release(db));
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) assert_int_equal(args[i].rank, i);
    duet_close(db);
    free(url);
}

/* The server's reason is in the error, not a bare "timed out". */
static void test_connect_error_named(void **state) {
    (void)state;
    duet_db *db;
    const char *bad = "postgresql://postgres@/postgres?host=/nonexistent-duet-dir&port=5999";
    char *url = test_url_with(bad, "min_connections=0&max_connections=2&acquire_timeout=0.3");
    assert_duet_ok(duet_open(url, &db));
    double t0 = test_now_ms();
    assert_int_equal(duet_ping(db), DUET_ERR_CONNECTION);
    double elapsed = test_now_ms() - t0;
    assert_true(elapsed >= 250 && elapsed < 5000);
    assert_non_null(strstr(duet_errmsg(), "timed out after"));
    assert_non_null(strstr(duet_errmsg(), "last connect error:"));
    assert_non_null(strstr(duet_errmsg(), "/nonexistent-duet-dir"));
    duet_close(db);
    free(url);
    /* with min_connections, duet_open itself reports it at once */
    url = test_url_with(bad, "min_connections=1");
    assert_int_equal(duet_open(url, &db), DUET_ERR_CONNECTION);
    assert_non_null(strstr(duet_errmsg(), "could not connect"));
    assert_null(db);
    free(url);
}

/* Pool events arrive through the log callback. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_seen[4096];

static void capture_log(void *arg, duet_log_level level, const char *name, const char *line) {
    (void)arg, (void)level;
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(log_seen);
    snprintf(log_seen + n, sizeof log_seen - n, "[%s] %s\n", name, line);
    pthread_mutex_unlock(&log_mu);
}

/* ------------------------------------------------------------------ */
/* max_lifetime, idle_timeout, test_before_acquire                     */
/* ------------------------------------------------------------------ */

static void test_max_lifetime(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=1&min_connections=0&max_lifetime=1");
    duet_db *db;
    log_seen[0] = '\0';
    duet_set_log(capture_log, NULL, DUET_LOG_INFO);
    assert_duet_ok(duet_open(url, &db));
    int64_t pid1 = test_int(db, "SELECT pg_backend_pid()");
    assert_int_equal(test_int(db, "SELECT pg_backend_pid()"), pid1); /* reused while young */
    /* held across its lifetime: it is not closed under its user... */
    assert_duet_ok(duet_acquire(db));
    test_sleep_ms(1200);
    assert_int_equal(test_int(db, "SELECT pg_backend_pid()"), pid1);
    assert_duet_ok(duet_release(db)); /* ...but retired when returned */
    int64_t pid2 = test_int(db, "SELECT pg_backend_pid()");
    assert_true(pid2 != pid1);
    duet_set_log(NULL, NULL, DUET_LOG_DEBUG);
    pthread_mutex_lock(&log_mu);
    bool logged = strstr(log_seen, "[default] connection closed (max_lifetime)") != NULL;
    pthread_mutex_unlock(&log_mu);
    if (!logged) fail_msg("no retirement in the log: %s", log_seen);
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_true(s.closed >= 1);
    duet_close(db);
    free(url);
}

typedef struct hold_arg {
    duet_db *db;
    pthread_barrier_t *barrier;
} hold_arg;

static void *hold_thread(void *p) {
    hold_arg *a = p;
    duet_status st = duet_acquire(a->db);
    pthread_barrier_wait(a->barrier); /* all hold one at the same time */
    if (st == DUET_OK) duet_release(a->db);
    return NULL;
}

static size_t pool_size(duet_db *db) {
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    return s.size;
}

static void wait_for_size(duet_db *db, size_t n, double max_ms) {
    double t0 = test_now_ms();
    while (pool_size(db) != n && test_now_ms() - t0 < max_ms) test_sleep_ms(20);
    assert_int_equal(pool_size(db), n);
}

static void test_idle_timeout(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=4&min_connections=1&idle_timeout=0.5");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    assert_int_equal(pool_size(db), 1); /* min_connections opened up front */
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 3);
    hold_arg a = {db, &barrier};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, hold_thread, &a);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(pool_size(db), 3);
    wait_for_size(db, 1, 5000); /* back down to min_connections, not below */
    test_sleep_ms(700);
    assert_int_equal(pool_size(db), 1);
    duet_close(db);
    free(url);
}

static void terminate_backend(int64_t pid) {
    duet_db *admin;
    char sql[128];
    char *url = test_pg_url_with("min_connections=0");
    assert_duet_ok(duet_open(url, &admin));
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld, 5000)::int", (long long)pid);
    assert_int_equal(test_int(admin, sql), 1);
    duet_close(admin);
    free(url);
}

static void test_before_acquire_replaces_dead(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=1&min_connections=1&test_before_acquire=true");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    int64_t pid1 = test_int(db, "SELECT pg_backend_pid()");
    terminate_backend(pid1);
    test_sleep_ms(600); /* past the half second in which a connection is trusted */
    int64_t pid2 = test_int(db, "SELECT pg_backend_pid()"); /* no error for the caller */
    assert_true(pid2 != pid1);
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.closed, 1);
    assert_int_equal(s.size, 1);
    duet_close(db);
    free(url);
}

static void test_broken_connection_discarded(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=1&min_connections=1&test_before_acquire=false");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    int64_t pid1 = test_int(db, "SELECT pg_backend_pid()");
    terminate_backend(pid1);
    duet_result *r = NULL;
    /* without the check the caller sees the failure once... */
    assert_int_equal(duet_fetch_val(db, "SELECT 1", NULL, 0, &r), DUET_ERR_CONNECTION);
    /* ...and the broken connection is not reused */
    assert_true(test_int(db, "SELECT pg_backend_pid()") != pid1);
    duet_close(db);
    free(url);
}

/* A connection returned inside an open transaction is rolled back before reuse. */
static void test_dirty_connection_rolled_back(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=1&min_connections=0");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    test_exec(db, "DROP TABLE IF EXISTS pool_dirty");
    test_exec(db, "CREATE TABLE pool_dirty (x int)");
    assert_duet_ok(duet_acquire(db));
    test_exec(db, "BEGIN");
    test_exec(db, "INSERT INTO pool_dirty VALUES (1)");
    assert_duet_ok(duet_release(db));
    assert_int_equal(test_int(db, "SELECT count(*) FROM pool_dirty"), 0);
    /* a failed transaction block too */
    assert_duet_ok(duet_acquire(db));
    test_exec(db, "BEGIN");
    assert_int_not_equal(duet_execute(db, "SELECT 1/0", NULL, NULL, NULL), DUET_OK);
    assert_duet_ok(duet_release(db));
    assert_int_equal(test_int(db, "SELECT 1"), 1);
    test_exec(db, "DROP TABLE pool_dirty");
    duet_close(db);
    free(url);
}


/* ------------------------------------------------------------------ */
/* A server backend that stops answering (SIGSTOP): nothing may hang    */
/* ------------------------------------------------------------------ */

/*
 * A stopped backend keeps its socket open and never answers, like a peer
 * that vanished without a FIN: PQcancel cannot reach it either (the
 * signal stays pending).  run-suites runs the tests as root, so the test
 * can stop the postgres-owned backend; it is always continued again.
 */
typedef struct stopped_call {
    duet_db *db;
    int what;       /* 0: duet_release, 1: duet_commit, 2: fetch SELECT 1, 3: force_rollback off,
                       4: fetch pg_sleep(20) then duet_rollback, 5: duet_close */
    duet_conn *conn; /* handed over from the main thread (duet_detach) for 0 and 1 */
    duet_status st;
    double took_ms;
    volatile bool done;
    char err[512];
} stopped_call;

static void *stopped_call_main(void *p) {
    stopped_call *a = p;
    double t0 = test_now_ms();
    if (a->conn && (a->st = duet_attach(a->db, a->conn)) != DUET_OK) {
        snprintf(a->err, sizeof a->err, "%s", duet_errmsg());
        a->done = true;
        return NULL;
    }
    if (a->what == 0) {
        a->st = duet_release(a->db);
    } else if (a->what == 1) {
        a->st = duet_commit(a->db);
    } else if (a->what == 3) {
        a->st = duet_force_rollback(a->db, false);
    } else if (a->what == 5) {
        duet_close(a->db);
        a->st = DUET_OK;
    } else if (a->what == 4) {
        duet_result *r = NULL;
        a->st = duet_fetch_val(a->db, "SELECT pg_sleep(20)", NULL, 0, &r);
        duet_result_free(r);
        snprintf(a->err, sizeof a->err, "%s", duet_errmsg());
        a->took_ms = test_now_ms() - t0;
        duet_rollback(a->db);
        a->done = true;
        return NULL;
    } else {
        duet_result *r = NULL;
        a->st = duet_fetch_val(a->db, "SELECT 1", NULL, 0, &r);
        duet_result_free(r);
    }
    snprintf(a->err, sizeof a->err, "%s", duet_errmsg());
    a->took_ms = test_now_ms() - t0;
    a->done = true;
    return NULL;
}

/*
 * Runs the call in a thread while pid is stopped; continues pid after the
 * call returns or after limit_ms, whichever comes first, and fails the test
 * when the call needed the backend to be continued.
 */
static void call_while_stopped(stopped_call *a, int64_t pid, double limit_ms) {
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stopped_call_main, a), 0);
    double t0 = test_now_ms();
    while (!a->done && test_now_ms() - t0 < limit_ms) test_sleep_ms(50);
    bool hung = !a->done;
    kill((pid_t)pid, SIGCONT);
    pthread_join(th, NULL);
    if (hung) fail_msg("the call hung on a stopped server process (returned %.0f ms later, after SIGCONT)",
                       a->took_ms);
}

static int64_t stop_backend(duet_db *db) {
    int64_t pid = test_int(db, "SELECT pg_backend_pid()");
    assert_int_equal(kill((pid_t)pid, SIGSTOP), 0);
    return pid;
}

/*
 * Stops the backend of the connection pinned to this thread, waits
 * settle_ms, and runs a's call on that connection in another thread (see
 * call_while_stopped).  Returns the backend's pid.
 */
static int64_t call_on_stopped_backend(duet_db *db, stopped_call *a, double settle_ms,
                                       double limit_ms) {
    int64_t pid = test_int(db, "SELECT pg_backend_pid()");
    assert_duet_ok(duet_detach(db, &a->conn)); /* before the stop: a failure must not leave it */
    assert_int_equal(kill((pid_t)pid, SIGSTOP), 0);
    if (settle_ms > 0) test_sleep_ms(settle_ms);
    call_while_stopped(a, pid, limit_ms);
    return pid;
}

/* A dirty connection returned to the pool is rolled back, but never waits forever for it. */
static void test_stopped_backend_rollback_on_return(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=2&min_connections=0&test_before_acquire=false");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_acquire(db));
    test_exec(db, "BEGIN");
    stopped_call a = {.db = db, .what = 0};
    call_on_stopped_backend(db, &a, 0, 15000);
    if (a.st != DUET_OK) fail_msg("release: %s: %s", duet_status_name(a.st), a.err); /* the caller's release is not an error: the pool dealt with it */
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.in_use, 0);
    assert_int_equal(s.closed, 1); /* discarded, never reused */
    assert_int_equal(test_int(db, "SELECT 1"), 1);
    duet_close(db);
    free(url);
}

/* transaction_timeout's reaper rolls back an idle transaction, but never waits forever for it. */
static void test_stopped_backend_reaper(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=2&min_connections=0&test_before_acquire=false"
                                 "&transaction_timeout=500ms&transaction_cleanup_interval=100ms");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_begin(db));
    stopped_call a = {.db = db, .what = 1};
    /* meanwhile the reaper finds the transaction and tries to roll it back */
    call_on_stopped_backend(db, &a, 1000, 15000);
    if (a.st != DUET_ERR_EXPIRED) fail_msg("commit: %s: %s", duet_status_name(a.st), a.err);
    assert_int_equal(test_int(db, "SELECT 1"), 1); /* the pool and its thread still work */
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.in_use, 0);
    duet_close(db);
    free(url);
}

/*
 * transaction_timeout interrupts a statement of an expired transaction.  The
 * cancel request must have reached the server before the connection runs
 * anything else, or it cancels a later statement, maybe another caller's.
 */
static void test_expiry_cancel_never_lands_late(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=1&min_connections=0&transaction_timeout=40ms"
                                 "&transaction_cleanup_interval=5ms");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    int expired = 0;
    for (int i = 0; i < 60; i++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT pg_sleep(%.3f)", 0.030 + (i % 20) / 1000.0);
        assert_duet_ok(duet_begin(db));
        if (duet_execute(db, sql, NULL, NULL, NULL) != DUET_OK) expired++;
        duet_rollback(db);
        if (duet_execute(db, "SELECT pg_sleep(0.02)", NULL, NULL, NULL) != DUET_OK)
            fail_msg("round %d: a statement after the expired transaction failed: [%s] %s", i,
                     duet_errsqlstate(), duet_errmsg());
    }
    assert_true(expired > 0); /* the reaper did interrupt running statements */
    duet_close(db);
    free(url);
}

/* Closing the pool with a transaction open on a stopped backend: closing the connection ends it. */
static void test_stopped_backend_close(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=2&min_connections=0");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_begin(db));
    test_exec(db, "CREATE TABLE pool_close_rolled_back (x int)");
    stopped_call a = {.db = db, .what = 5};
    int64_t pid = call_on_stopped_backend(db, &a, 0, 5000);
    /* the server rolled the transaction back when its connection went away */
    assert_duet_ok(duet_open(url, &db));
    char gone_sql[128];
    snprintf(gone_sql, sizeof gone_sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld",
             (long long)pid);
    for (int i = 0; i < 100 && test_int(db, gone_sql) != 0; i++)
        test_sleep_ms(50); /* the stopped backend ends once continued */
    assert_int_equal(test_int(db, "SELECT count(*) FROM pg_class WHERE relname = "
                                  "'pool_close_rolled_back'"), 0);
    duet_close(db);
    free(url);
}

/* The parent of a backend: the postmaster. */
static int64_t parent_pid(int64_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%lld/stat", (long long)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *after_name = strrchr(buf, ')'); /* the name may hold spaces */
    char state;
    long long ppid = 0;
    assert_non_null(after_name);
    assert_int_equal(sscanf(after_name + 1, " %c %lld", &state, &ppid), 2);
    return ppid;
}

/*
 * A call in an expired transaction while the postmaster is stopped: the
 * cancel request can never be delivered (libpq's PQcancel would wait for
 * ever for the postmaster), yet the pool cuts the connection off and the
 * call returns long before its pg_sleep(20) would have ended.
 */
static void test_stopped_postmaster_interrupt(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=2&min_connections=0&test_before_acquire=false"
                                 "&transaction_timeout=500ms&transaction_cleanup_interval=100ms");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_begin(db));
    int64_t postmaster = parent_pid(test_int(db, "SELECT pg_backend_pid()"));
    stopped_call a = {.db = db, .what = 4};
    assert_duet_ok(duet_detach(db, &a.conn));
    assert_int_equal(kill((pid_t)postmaster, SIGSTOP), 0);
    call_while_stopped(&a, postmaster, 12000);
    if (a.st == DUET_OK) fail_msg("pg_sleep(20) in an expired transaction succeeded");
    assert_true(a.took_ms < 10000); /* 500 ms to expire, 5 s to answer the cancel, the tick */
    assert_int_equal(test_int(db, "SELECT 1"), 1); /* the pool and its thread still work */
    duet_close(db);
    free(url);
}

/* Switching force_rollback off (as duet_close does) on a stopped backend. */
static void test_stopped_backend_force_rollback_off(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=2&min_connections=0&force_rollback=true");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    int64_t pid = stop_backend(db); /* the session's connection */
    stopped_call a = {.db = db, .what = 3};
    call_while_stopped(&a, pid, 15000);
    assert_int_equal(a.st, DUET_ERR_CONNECTION); /* the session died with its connection */
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.in_use, 0);
    assert_int_equal(test_int(db, "SELECT 1"), 1);
    duet_close(db);
    free(url);
}

/* test_before_acquire on a stopped backend: replaced, within acquire_timeout. */
static void test_stopped_backend_liveness_check(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=1&min_connections=1&test_before_acquire=true"
                                 "&acquire_timeout=3");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    int64_t pid = stop_backend(db);
    test_sleep_ms(600); /* past the half second in which a connection is trusted */
    stopped_call a = {.db = db, .what = 2};
    call_while_stopped(&a, pid, 15000);
    if (a.st != DUET_OK) fail_msg("SELECT 1: %s: %s", duet_status_name(a.st), a.err);
    assert_true(a.took_ms < 3000 + 1500); /* acquire_timeout, and the pool thread's tick */
    assert_true(test_int(db, "SELECT pg_backend_pid()") != pid);
    duet_close(db);
    free(url);
}

/* ------------------------------------------------------------------ */
/* Leak warnings, hand-off, misuse                                     */
/* ------------------------------------------------------------------ */

static void test_leak_warning(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=2&min_connections=0&leak_threshold=0.1");
    duet_db *db;
    log_seen[0] = '\0';
    duet_set_log(capture_log, NULL, DUET_LOG_WARNING);
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_acquire(db)); int line = __LINE__;
    test_sleep_ms(500);
    char where[64];
    snprintf(where, sizeof where, "test_pool.c:%d", line);
    pthread_mutex_lock(&log_mu);
    bool warned = strstr(log_seen, "possible connection leak") && strstr(log_seen, where) &&
                  strstr(log_seen, "[default]");
    pthread_mutex_unlock(&log_mu);
    duet_set_log(NULL, NULL, DUET_LOG_DEBUG);
    if (!warned) fail_msg("no leak warning naming %s in: %s", where, log_seen);
    assert_duet_ok(duet_release(db));
    duet_close(db);
    free(url);
}

typedef struct handoff_arg {
    duet_db *db;
    duet_conn *conn;
    int64_t pid;
    int64_t temp_rows;
    duet_status st;
} handoff_arg;

static void *handoff_thread(void *p) {
    handoff_arg *a = p;
    a->st = duet_attach(a->db, a->conn);
    if (a->st != DUET_OK) return NULL;
    a->pid = test_int(a->db, "SELECT pg_backend_pid()");
    /* a TEMP table: visible only in the same session */
    a->temp_rows = test_int(a->db, "SELECT count(*) FROM pool_handoff");
    a->st = duet_release(a->db);
    return NULL;
}

static void test_detach_attach(void **state) {
    (void)state;
    char *url = test_pg_url_with("max_connections=2&min_connections=0");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    duet_conn *conn = NULL;
    assert_int_equal(duet_detach(db, &conn), DUET_ERR_MISUSE); /* nothing pinned */
    assert_duet_ok(duet_acquire(db));
    test_exec(db, "CREATE TEMP TABLE pool_handoff AS SELECT 1 AS x");
    int64_t pid = test_int(db, "SELECT pg_backend_pid()");
    assert_duet_ok(duet_detach(db, &conn));
    assert_non_null(conn);
    handoff_arg a = {.db = db, .conn = conn};
    pthread_t th;
    pthread_create(&th, NULL, handoff_thread, &a);
    pthread_join(th, NULL);
    assert_int_equal(a.st, DUET_OK);
    assert_int_equal(a.pid, pid);
    assert_int_equal(a.temp_rows, 1);
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.in_use, 0);
    assert_int_equal(duet_release(db), DUET_ERR_MISUSE); /* nothing left to release here */
    duet_close(db);
    free(url);
}

static void test_ping_and_names(void **state) {
    (void)state;
    duet_db *db;
    char *url = test_pg_url_with("min_connections=0");
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_ping(db));
    assert_string_equal(duet_db_name(db), "default");
    assert_int_equal(duet_db_backend(db), DUET_POSTGRESQL);
    duet_close(db);
    free(url);
}

/* ------------------------------------------------------------------ */
/* SQLite                                                              */
/* ------------------------------------------------------------------ */

typedef struct count_arg {
    duet_db *db;
    int64_t n;
} count_arg;

static void *count_thread(void *p) {
    count_arg *a = p;
    a->n = test_int(a->db, "SELECT count(*) FROM shared_t");
    return NULL;
}

/* One :memory: database per pool, shared by its connections, alive as long as the pool. */
static void test_sqlite_memory_shared(void **state) {
    (void)state;
    const char *url = "sqlite:///:memory:?max_connections=4&min_connections=0&idle_timeout=0.1";
    duet_db *db, *other;
    assert_duet_ok(duet_open(url, &db));
    assert_duet_ok(duet_open(url, &other));
    assert_int_equal(duet_db_backend(db), DUET_SQLITE);
    test_exec(db, "CREATE TABLE shared_t (x)");
    test_exec(db, "INSERT INTO shared_t VALUES (1), (2)");
    assert_duet_ok(duet_acquire(db)); /* this thread holds one connection... */
    count_arg a = {db, -1};
    pthread_t th;
    pthread_create(&th, NULL, count_thread, &a); /* ...so the thread gets another */
    pthread_join(th, NULL);
    assert_int_equal(a.n, 2);
    assert_duet_ok(duet_release(db));
    wait_for_size(db, 0, 3000); /* every pooled connection closed by idle_timeout */
    assert_int_equal(test_int(db, "SELECT count(*) FROM shared_t"), 2);
    duet_result *r = NULL; /* another pool's :memory: is another database */
    assert_int_equal(duet_fetch_val(other, "SELECT count(*) FROM shared_t", NULL, 0, &r),
                     DUET_ERR_SYNTAX);
    duet_close(other);
    duet_close(db);
}

static void test_sqlite_file_wal(void **state) {
    (void)state;
    char *dir = test_tmpdir();
    char *url = test_sqlite_url(dir, "wal.db", "max_connections=3&min_connections=2");
    duet_db *db;
    assert_duet_ok(duet_open(url, &db));
    duet_result *r = NULL;
    assert_duet_ok(duet_fetch_val(db, "PRAGMA journal_mode", NULL, 0, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "wal");
    duet_result_free(r);
    assert_int_equal(pool_size(db), 2);
    duet_close(db);
    free(url);
    test_rmdir(dir);
}

static void test_release_misuse(void **state) {
    (void)state;
    duet_db *db;
    assert_duet_ok(duet_open("sqlite:///:memory:?min_connections=0", &db));
    assert_int_equal(duet_release(db), DUET_ERR_MISUSE);
    assert_duet_ok(duet_acquire(db));
    assert_duet_ok(duet_acquire(db)); /* pins nest */
    assert_duet_ok(duet_release(db));
    assert_int_equal(duet_txn_depth(db), 0);
    assert_duet_ok(duet_release(db));
    assert_int_equal(duet_release(db), DUET_ERR_MISUSE);
    duet_close(db);
}

int main(void) {
    alarm(TEST_WATCHDOG_SECONDS); /* a hang fails this binary instead of the whole suite */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress_pg),
        cmocka_unit_test(test_stress_sqlite_memory),
        cmocka_unit_test(test_acquire_timeout),
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_connect_error_named),
        cmocka_unit_test(test_max_lifetime),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_before_acquire_replaces_dead),
        cmocka_unit_test(test_broken_connection_discarded),
        cmocka_unit_test(test_dirty_connection_rolled_back),
        cmocka_unit_test(test_stopped_backend_rollback_on_return),
        cmocka_unit_test(test_stopped_backend_reaper),
        cmocka_unit_test(test_stopped_backend_liveness_check),
        cmocka_unit_test(test_stopped_backend_force_rollback_off),
        cmocka_unit_test(test_stopped_postmaster_interrupt),
        cmocka_unit_test(test_stopped_backend_close),
        cmocka_unit_test(test_expiry_cancel_never_lands_late),
        cmocka_unit_test(test_leak_warning),
        cmocka_unit_test(test_detach_attach),
        cmocka_unit_test(test_ping_and_names),
        cmocka_unit_test(test_sqlite_memory_shared),
        cmocka_unit_test(test_sqlite_file_wal),
        cmocka_unit_test(test_release_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
