/*
 * test_force_rollback.c — force_rollback on PostgreSQL (with the duet
 * extension's server-side test session, and without it: client savepoints)
 * and on SQLite (with the duet SQLite extension loaded through
 * extension=PATH, whose duet_test_begin() session is used, and without it:
 * client savepoints), each checked from a second, normal pool: nothing leaks,
 * the program's transactions keep their meaning, a failed statement loses
 * only itself, every thread shares the one session, switching off or
 * closing rolls everything back.
 */
#include <pthread.h>

#include "testutil.h"

typedef enum mode { PG_CLIENT, PG_SERVER, SQLITE, SQLITE_EXT } mode;

/* The duet SQLite extension (run-suites exports it); the test fails, not skips, without it. */
static const char *sqlite_ext_path(void) {
    const char *p = getenv("DUET_SQLITE_EXT");
    if (!p || !*p) fail_msg("DUET_SQLITE_EXT is not set: run the tests through make check");
    return p;
}

typedef struct fixture {
    mode mode;
    char *base; /* URL without options */
    char *dir;
    duet_db *db;    /* the force_rollback pool under test; closed by teardown after a failure */
    duet_db *check; /* a normal pool on the same database */
} fixture;

/* The force_rollback pool's URL: the SQLite extension is loaded there only, never in f->check. */
static char *fixture_url(fixture *f, const char *opts) {
    if (f->mode != SQLITE_EXT) return test_url_with(f->base, opts);
    char ext[1024];
    snprintf(ext, sizeof ext, "extension=%s%s%s", sqlite_ext_path(), *opts ? "&" : "", opts);
    return test_url_with(f->base, ext);
}

/*
 * A database of its own next to the test cluster's "postgres": with the
 * duet extension (server session) or surely without it (client savepoints).
 */
static char *database_url(const char *name, bool with_extension) {
    const char *url = test_pg_url();
    const char *at = strstr(url, "/postgres?");
    if (!at) fail_msg("unexpected DUET_PG_URL shape: %s", url);
    duet_db *admin;
    char sql[128];
    char *u = test_pg_url_with("min_connections=0");
    assert_duet_ok(duet_open(u, &admin));
    free(u);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_database WHERE datname = '%s'", name);
    if (test_int(admin, sql) == 0) {
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        test_exec(admin, sql);
    }
    duet_close(admin);
    size_t n = strlen(url) + strlen(name) + 8;
    char *db_url = malloc(n);
    snprintf(db_url, n, "%.*s/%s%s", (int)(at - url), url, name, at + strlen("/postgres"));
    u = test_url_with(db_url, "min_connections=0");
    assert_duet_ok(duet_open(u, &admin));
    free(u);
    duet_status st = duet_execute(admin,
                                  with_extension ? "CREATE EXTENSION IF NOT EXISTS duet"
                                                 : "DROP EXTENSION IF EXISTS duet",
                                  NULL, NULL, NULL);
    if (st != DUET_OK) fail_msg("(CREATE|DROP) EXTENSION duet failed: %s", duet_errmsg());
    duet_close(admin);
    return db_url;
}

static int setup(void **state, mode m) {
    fixture *f = calloc(1, sizeof *f);
    f->mode = m;
    if (m == PG_CLIENT) {
        f->base = database_url("duet_fr_plain", false);
    } else if (m == PG_SERVER) {
        f->base = database_url("duet_fr_ext", true);
    } else {
        f->dir = test_tmpdir(); /* SQLITE and SQLITE_EXT */
        f->base = test_sqlite_url(f->dir, "fr.db", "");
    }
    char *url = test_url_with(f->base, "min_connections=0");
    assert_duet_ok(duet_open(url, &f->check));
    free(url);
    test_exec(f->check, "DROP TABLE IF EXISTS fr_t");
    test_exec(f->check, "CREATE TABLE fr_t (id int PRIMARY KEY)");
    *state = f;
    return 0;
}

static int setup_pg_client(void **state) { return setup(state, PG_CLIENT); }
static int setup_pg_server(void **state) { return setup(state, PG_SERVER); }
static int setup_sqlite(void **state) { return setup(state, SQLITE); }
static int setup_sqlite_ext(void **state) { return setup(state, SQLITE_EXT); }

static int teardown(void **state) {
    fixture *f = *state;
    duet_close(f->db); /* releases the session's locks, which the DROP below would wait for */
    duet_execute(f->check, "DROP TABLE IF EXISTS fr_t", NULL, NULL, NULL);
    duet_close(f->check);
    if (f->dir) test_rmdir(f->dir);
    free(f->base);
    free(f);
    return 0;
}

static duet_status insert(duet_db *db, int id) {
    duet_params *p = duet_params_new();
    duet_bind_int64(p, NULL, id);
    duet_status st = duet_execute(db, "INSERT INTO fr_t (id) VALUES (?)", p, NULL, NULL);
    duet_params_free(p);
    return st;
}

static int64_t sum_ids(duet_db *db) {
    return test_int(db, "SELECT coalesce(sum(id), 0) FROM fr_t");
}
static int64_t count(duet_db *db) { return test_int(db, "SELECT count(*) FROM fr_t"); }

/* Which mechanism force_rollback chose, from its log line. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_seen[2048];

static void capture_log(void *arg, duet_log_level level, const char *name, const char *line) {
    (void)arg, (void)level, (void)name;
    pthread_mutex_lock(&log_mu);
    if (strstr(line, "force_rollback")) {
        size_t n = strlen(log_seen);
        snprintf(log_seen + n, sizeof log_seen - n, "%s\n", line);
    }
    pthread_mutex_unlock(&log_mu);
}

static duet_db *open_fr(fixture *f, const char *opts) {
    duet_db *db = NULL;
    char *url = fixture_url(f, opts);
    log_seen[0] = '\0';
    duet_set_log(capture_log, NULL, DUET_LOG_INFO);
    assert_duet_ok(duet_open(url, &db));
    duet_set_log(NULL, NULL, DUET_LOG_DEBUG);
    free(url);
    f->db = db;
    return db;
}

static void close_fr(fixture *f) {
    duet_close(f->db);
    f->db = NULL;
}

static void assert_mechanism(fixture *f) {
    const char *want = f->mode == PG_SERVER    ? "server test session"
                       : f->mode == SQLITE_EXT ? "SQLite extension test session"
                                               : "client savepoints";
    if (!strstr(log_seen, want)) fail_msg("expected \"%s\", log: %s", want, log_seen);
}

/* ------------------------------------------------------------------ */

static void test_url_option(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "force_rollback=true&min_connections=0&max_connections=3");
    assert_mechanism(f);
    assert_duet_ok(insert(db, 1)); /* "autocommit" */
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(insert(db, 2));
    assert_duet_ok(duet_commit(db)); /* the program's commit: a savepoint released */
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(insert(db, 4));
    assert_duet_ok(duet_rollback(db)); /* undoes only 4 */
    assert_int_equal(sum_ids(db), 3);
    assert_int_equal(count(f->check), 0); /* nothing visible outside */
    assert_int_equal(insert(db, 1), DUET_ERR_INTEGRITY); /* loses only this statement */
    assert_int_equal(sum_ids(db), 3);
    assert_duet_ok(insert(db, 8));
    /* an error inside the program's transaction fails that transaction, as usual */
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(insert(db, 64));
    assert_int_equal(insert(db, 64), DUET_ERR_INTEGRITY);
    assert_duet_ok(duet_rollback(db));
    assert_int_equal(duet_txn_depth(db), 0);
    assert_int_equal(sum_ids(db), 11);
    assert_int_equal(count(f->check), 0);
    close_fr(f); /* rolls everything back */
    assert_int_equal(count(f->check), 0);
}

/* The program's nested transactions: savepoints inside its savepoint (or server level). */
static void test_nested(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "force_rollback=true&min_connections=0");
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(insert(db, 1));
    assert_duet_ok(duet_begin(db));
    assert_int_equal(duet_txn_depth(db), 2);
    assert_duet_ok(insert(db, 2));
    assert_duet_ok(duet_rollback(db)); /* only 2 goes */
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(insert(db, 4));
    assert_duet_ok(duet_commit(db));
    assert_duet_ok(duet_commit(db));
    assert_int_equal(duet_txn_depth(db), 0);
    assert_int_equal(sum_ids(db), 5);
    assert_int_equal(count(f->check), 0);
    close_fr(f);
    assert_int_equal(count(f->check), 0);
}

static void test_runtime_switch(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "min_connections=1");
    assert_duet_ok(insert(db, 100)); /* committed */
    assert_duet_ok(duet_force_rollback(db, false)); /* already off: nothing to do */
    assert_duet_ok(duet_begin(db));
    assert_int_equal(duet_force_rollback(db, true), DUET_ERR_MISUSE); /* not inside a transaction */
    assert_duet_ok(duet_rollback(db));
    assert_duet_ok(duet_force_rollback(db, true));
    assert_duet_ok(duet_force_rollback(db, true)); /* already on */
    assert_duet_ok(insert(db, 1));
    test_exec(db, "DELETE FROM fr_t WHERE id = 100");
    assert_int_equal(sum_ids(db), 1);
    assert_int_equal(sum_ids(f->check), 100);
    assert_duet_ok(duet_force_rollback(db, false));
    assert_int_equal(sum_ids(db), 100);
    assert_duet_ok(insert(db, 7)); /* normal again: committed */
    assert_int_equal(sum_ids(f->check), 107);
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.in_use, 0);
    close_fr(f);
}

static void test_ddl_rolled_back(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "force_rollback=true&min_connections=0");
    test_exec(db, "CREATE TABLE fr_ddl (x int)");
    test_exec(db, "INSERT INTO fr_ddl VALUES (1)");
    assert_int_equal(test_int(db, "SELECT count(*) FROM fr_ddl"), 1);
    close_fr(f);
    duet_result *r = NULL;
    assert_int_equal(duet_fetch_val(f->check, "SELECT count(*) FROM fr_ddl", NULL, 0, &r),
                     DUET_ERR_SYNTAX); /* the table never existed for anyone else */
}

typedef struct worker_arg {
    duet_db *db;
    int base;
    int failures;
} worker_arg;

static duet_status insert_in_txn(duet_db *db, void *arg) { return insert(db, *(int *)arg); }

static void *worker(void *p) {
    worker_arg *a = p;
    for (int i = 0; i < 20; i++) {
        int id = a->base + i;
        duet_status st = i % 4 == 0 ? duet_atomic(a->db, insert_in_txn, &id) : insert(a->db, id);
        if (st != DUET_OK) a->failures++;
    }
    return NULL;
}

/* Every thread's calls run on the one pinned connection, inside the session. */
static void test_threads_share_session(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "force_rollback=true&min_connections=0&max_connections=4");
    pthread_t th[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){db, 1000 * (i + 1), 0};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    assert_int_equal(count(db), 80);
    assert_int_equal(count(f->check), 0);
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.in_use, 1); /* just the session's connection */
    assert_duet_ok(duet_force_rollback(db, false));
    assert_int_equal(count(db), 0);
    close_fr(f);
}

typedef struct switch_arg {
    duet_db *db;
    pthread_barrier_t *go;
    duet_status st;
} switch_arg;

static void *switch_on(void *p) {
    switch_arg *a = p;
    pthread_barrier_wait(a->go);
    a->st = duet_force_rollback(a->db, true);
    return NULL;
}

/* Two threads switching on at once get one session: no connection is left behind. */
static void test_concurrent_switch_on(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "min_connections=0&max_connections=4");
    for (int round = 0; round < 10; round++) {
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        pthread_t th[2];
        switch_arg args[2];
        for (int i = 0; i < 2; i++) {
            args[i] = (switch_arg){db, &go, DUET_OK};
            pthread_create(&th[i], NULL, switch_on, &args[i]);
        }
        for (int i = 0; i < 2; i++) {
            pthread_join(th[i], NULL);
            assert_duet_ok(args[i].st);
        }
        pthread_barrier_destroy(&go);
        assert_duet_ok(insert(db, round + 1));
        duet_pool_stats s;
        duet_pool_stats_get(db, &s);
        assert_int_equal(s.in_use, 1); /* the one session's connection */
        assert_duet_ok(duet_force_rollback(db, false));
        duet_pool_stats_get(db, &s);
        assert_int_equal(s.in_use, 0);
        assert_int_equal(count(f->check), 0);
    }
    close_fr(f);
}

static void *switch_on_plain(void *p) {
    switch_arg *a = p;
    a->st = duet_force_rollback(a->db, true);
    return NULL;
}

/*
 * A thread whose transaction began before another thread switched
 * force_rollback on finishes it on its own connection, which then goes
 * back to the pool (not stranded, with its transaction open).
 */
static void test_switch_on_during_other_transaction(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "min_connections=0&max_connections=4");
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(insert(db, 1));
    pthread_t th;
    switch_arg a = {db, NULL, DUET_OK};
    pthread_create(&th, NULL, switch_on_plain, &a);
    pthread_join(th, NULL);
    assert_duet_ok(a.st);
    assert_int_equal(duet_txn_depth(db), 1);
    assert_duet_ok(insert(db, 2));
    assert_duet_ok(duet_commit(db)); /* begun before: a real commit */
    assert_int_equal(sum_ids(f->check), 3);
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_int_equal(s.in_use, 1); /* just the session's connection */
    assert_duet_ok(insert(db, 4)); /* now in the session */
    assert_int_equal(sum_ids(db), 7);
    assert_duet_ok(duet_force_rollback(db, false));
    assert_int_equal(sum_ids(f->check), 3);
    close_fr(f);
}

typedef struct holder_arg {
    duet_db *db;
    pthread_barrier_t *held, *done;
    duet_status st;
} holder_arg;

/* Begins a program transaction in the session and keeps it until told. */
static void *hold_transaction(void *p) {
    holder_arg *a = p;
    a->st = duet_begin(a->db);
    if (a->st == DUET_OK) a->st = insert(a->db, 5);
    pthread_barrier_wait(a->held);
    pthread_barrier_wait(a->done);
    if (a->st == DUET_OK) a->st = duet_commit(a->db);
    return NULL;
}

/*
 * A thread that keeps a transaction open on the session's connection makes
 * the other threads wait for it, at most acquire_timeout: their calls, and
 * switching force_rollback off, then fail with DUET_ERR_TIMEOUT saying why
 * (they used to wait for ever).  Once it commits, switching off works.
 */
static void test_held_session_times_out(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "force_rollback=true&min_connections=0&acquire_timeout=300ms");
    pthread_barrier_t held, done;
    pthread_barrier_init(&held, NULL, 2);
    pthread_barrier_init(&done, NULL, 2);
    pthread_t th;
    holder_arg a = {db, &held, &done, DUET_OK};
    pthread_create(&th, NULL, hold_transaction, &a);
    pthread_barrier_wait(&held);

    double t0 = test_now_ms();
    assert_int_equal(insert(db, 1), DUET_ERR_TIMEOUT);
    assert_non_null(strstr(duet_errmsg(), "waiting for the force_rollback connection"));
    assert_int_equal(duet_force_rollback(db, false), DUET_ERR_TIMEOUT);
    double waited = test_now_ms() - t0;
    assert_true(waited >= 2 * 290 && waited < 5000);
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    assert_true(s.timeouts >= 2);

    pthread_barrier_wait(&done);
    pthread_join(th, NULL);
    assert_duet_ok(a.st);
    assert_int_equal(count(db), 1); /* the holder's row, in the session */
    assert_duet_ok(duet_force_rollback(db, false));
    assert_int_equal(count(f->check), 0);
    pthread_barrier_destroy(&held);
    pthread_barrier_destroy(&done);
    close_fr(f);
}

/*
 * What only the SQLite extension's session can do: the program's own COMMIT
 * sent as SQL (which commits a client-side outer transaction for real) and
 * its DDL are discarded too.  Checked from a second connection while the
 * session runs and after it ends.
 */
static void test_sqlite_ext_discards_commit(void **state) {
    fixture *f = *state;
    duet_db *db = open_fr(f, "force_rollback=true&min_connections=0&max_connections=2");
    assert_mechanism(f);
    duet_result *r = NULL;
    assert_duet_ok(duet_fetch_val(db, "SELECT duet_test_session()", NULL, 0, &r));
    assert_non_null(strstr(duet_result_text(r, 0, 0), "\"active\":true"));
    duet_result_free(r);
    test_exec(db, "CREATE TABLE fr_ext_ddl (x int)");
    test_exec(db, "INSERT INTO fr_ext_ddl VALUES (1)");
    assert_duet_ok(insert(db, 1));
    test_exec(db, "COMMIT"); /* the program's own COMMIT, as SQL */
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(insert(db, 2));
    test_exec(db, "COMMIT"); /* ends the program's transaction (a savepoint) ... */
    assert_duet_ok(duet_commit(db)); /* ... and this one has nothing left to end */
    assert_int_equal(sum_ids(db), 3);
    assert_int_equal(count(f->check), 0);
    assert_int_equal(duet_fetch_val(f->check, "SELECT count(*) FROM fr_ext_ddl", NULL, 0, &r),
                     DUET_ERR_SYNTAX); /* the DDL is not visible either */
    close_fr(f);
    assert_int_equal(count(f->check), 0);
    assert_int_equal(duet_fetch_val(f->check, "SELECT count(*) FROM fr_ext_ddl", NULL, 0, &r),
                     DUET_ERR_SYNTAX);
    /* and the extension is only loaded where asked: the check pool has no such function */
    assert_int_equal(duet_fetch_val(f->check, "SELECT duet_test_session()", NULL, 0, &r),
                     DUET_ERR_SYNTAX);
}

/* An unloadable extension fails duet_open with a configuration error naming the path. */
static void test_sqlite_ext_errors(void **state) {
    fixture *f = *state;
    duet_db *db = NULL;
    char *url = test_url_with(f->base, "extension=/nonexistent/duet_ext&min_connections=1");
    assert_int_equal(duet_open(url, &db), DUET_ERR_CONFIG);
    assert_null(db);
    assert_non_null(strstr(duet_errmsg(), "/nonexistent/duet_ext"));
    free(url);
    /* min_connections=0: the first query fails at once, not after acquire_timeout */
    url = test_url_with(f->base, "extension=/nonexistent/duet_ext&min_connections=0");
    assert_duet_ok(duet_open(url, &db));
    free(url);
    double t0 = test_now_ms();
    duet_result *r = NULL;
    assert_int_equal(duet_fetch_val(db, "SELECT 1", NULL, 0, &r), DUET_ERR_CONFIG);
    assert_non_null(strstr(duet_errmsg(), "/nonexistent/duet_ext"));
    assert_true(test_now_ms() - t0 < 5000);
    duet_close(db);
    /* PostgreSQL URLs do not take it, and never echo the password */
    assert_int_equal(duet_config_parse("postgresql://u:s3cret@h/db?extension=/x", &(duet_config *){0}),
                     DUET_ERR_CONFIG);
    assert_non_null(strstr(duet_errmsg(), "sqlite"));
    assert_null(strstr(duet_errmsg(), "s3cret"));
}

#define ALL(fn)                                                        \
    cmocka_unit_test_setup_teardown(fn, setup_pg_client, teardown),    \
        cmocka_unit_test_setup_teardown(fn, setup_pg_server, teardown), \
        cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown),    \
        cmocka_unit_test_setup_teardown(fn, setup_sqlite_ext, teardown)

int main(void) {
    alarm(TEST_WATCHDOG_SECONDS); /* a hang fails this binary instead of the whole suite */
    const struct CMUnitTest tests[] = {
        ALL(test_url_option),
        ALL(test_nested),
        ALL(test_runtime_switch),
        ALL(test_ddl_rolled_back),
        ALL(test_threads_share_session),
        ALL(test_concurrent_switch_on),
        ALL(test_switch_on_during_other_transaction),
        ALL(test_held_session_times_out),
        cmocka_unit_test_setup_teardown(test_sqlite_ext_discards_commit, setup_sqlite_ext, teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_ext_errors, setup_sqlite_ext, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
