/*
 * test_txn.c — transactions on both engines, checked from a second,
 * independent pool: nesting through savepoints, the thread-local
 * connection, isolation and read-only, duet_atomic with retries, row locks,
 * transaction_timeout, and handing a transaction to another thread.
 */
#include <pthread.h>

#include "testutil.h"

typedef struct engine {
    bool pg;
    char *dir; /* SQLite: the database's directory */
    duet_db *db;
    duet_db *check; /* another pool on the same database */
} engine;

static char *engine_url(engine *e, const char *opts) {
    if (e->pg) return test_pg_url_with(opts);
    return test_sqlite_url(e->dir, "txn.db", opts);
}

static void engine_open(engine *e, const char *opts) {
    char *url = engine_url(e, opts);
    assert_duet_ok(duet_open(url, &e->db));
    free(url);
    url = engine_url(e, "min_connections=0");
    assert_duet_ok(duet_open(url, &e->check));
    free(url);
    test_exec(e->check, "DROP TABLE IF EXISTS txn_t");
    test_exec(e->check, "CREATE TABLE txn_t (id int PRIMARY KEY, v int)");
}

static int setup_pg(void **state) {
    engine *e = calloc(1, sizeof *e);
    e->pg = true;
    *state = e;
    return 0;
}

static int setup_sqlite(void **state) {
    engine *e = calloc(1, sizeof *e);
    e->dir = test_tmpdir();
    *state = e;
    return 0;
}

static int teardown(void **state) {
    engine *e = *state;
    if (e->check) {
        duet_execute(e->check, "DROP TABLE IF EXISTS txn_t", NULL, NULL, NULL);
        duet_close(e->check);
    }
    duet_close(e->db);
    if (e->dir) test_rmdir(e->dir);
    free(e);
    return 0;
}

static void insert(duet_db *db, int id) {
    duet_params *p = duet_params_new();
    duet_bind_int64(p, "id", id);
    assert_duet_ok(duet_execute(db, "INSERT INTO txn_t (id, v) VALUES (:id, 0)", p, NULL, NULL));
    duet_params_free(p);
}

static int64_t count(duet_db *db) { return test_int(db, "SELECT count(*) FROM txn_t"); }
static int64_t sum_ids(duet_db *db) {
    return test_int(db, "SELECT coalesce(sum(id), 0) FROM txn_t");
}

/* ------------------------------------------------------------------ */

static void test_nested(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=1");
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 1);
    assert_duet_ok(duet_begin(e->db)); /* SAVEPOINT */
    assert_int_equal(duet_txn_depth(e->db), 2);
    insert(e->db, 2);
    assert_duet_ok(duet_rollback(e->db)); /* ROLLBACK TO: only 2 is gone */
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 4);
    assert_duet_ok(duet_begin(e->db)); /* three levels */
    insert(e->db, 8);
    assert_duet_ok(duet_commit(e->db));
    assert_duet_ok(duet_commit(e->db));
    assert_int_equal(duet_txn_depth(e->db), 1);
    assert_int_equal(sum_ids(e->db), 13);
    assert_int_equal(count(e->check), 0); /* nothing visible outside before the outer commit */
    assert_duet_ok(duet_commit(e->db));
    assert_int_equal(duet_txn_depth(e->db), 0);
    assert_int_equal(sum_ids(e->check), 13);
}

static void test_rollback_outer(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=1");
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 1);
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 2);
    assert_duet_ok(duet_commit(e->db));
    assert_duet_ok(duet_rollback(e->db)); /* the committed savepoint goes too */
    assert_int_equal(count(e->check), 0);
    assert_int_equal(count(e->db), 0);
    duet_pool_stats s;
    duet_pool_stats_get(e->db, &s);
    assert_int_equal(s.in_use, 0); /* unpinned after the outermost end */
}

static void test_misuse(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0");
    assert_int_equal(duet_commit(e->db), DUET_ERR_MISUSE);
    assert_non_null(strstr(duet_errmsg(), "no transaction"));
    assert_int_equal(duet_rollback(e->db), DUET_ERR_MISUSE);
    assert_duet_ok(duet_begin(e->db));
    assert_int_equal(duet_begin_with(e->db, DUET_SERIALIZABLE, 0), DUET_ERR_MISUSE);
    assert_int_equal(duet_txn_depth(e->db), 1);
    assert_duet_ok(duet_rollback(e->db));
}

typedef struct peek_arg {
    duet_db *db;
    int64_t n;
} peek_arg;

static void *peek_thread(void *p) {
    peek_arg *a = p;
    a->n = count(a->db);
    return NULL;
}

/* In a transaction the thread's calls share its connection; other threads do not. */
static void test_thread_local(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0&max_connections=4");
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 1);
    insert(e->db, 2);
    assert_int_equal(count(e->db), 2);
    peek_arg a = {e->db, -1};
    pthread_t th;
    pthread_create(&th, NULL, peek_thread, &a);
    pthread_join(th, NULL);
    assert_int_equal(a.n, 0);
    assert_duet_ok(duet_commit(e->db));
    pthread_create(&th, NULL, peek_thread, &a);
    pthread_join(th, NULL);
    assert_int_equal(a.n, 2);
}

static duet_status insert_then(duet_db *db, void *arg) {
    int *mode = arg;
    insert(db, 10);
    if (*mode == 1) /* the same key again */
        return duet_execute(db, "INSERT INTO txn_t (id, v) VALUES (10, 0)", NULL, NULL, NULL);
    return DUET_OK;
}

static void test_atomic(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0");
    int mode = 0;
    assert_duet_ok(duet_atomic(e->db, insert_then, &mode));
    assert_int_equal(count(e->check), 1);
    test_exec(e->check, "DELETE FROM txn_t");
    mode = 1; /* duplicate key: rolled back, fn's error returned */
    assert_int_equal(duet_atomic(e->db, insert_then, &mode), DUET_ERR_INTEGRITY);
    assert_int_equal(duet_errcode(), DUET_ERR_INTEGRITY);
    assert_int_equal(count(e->check), 0);
    assert_int_equal(duet_txn_depth(e->db), 0);
    /* nested atomic is a savepoint: its failure leaves the outer work */
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 1);
    assert_int_equal(duet_atomic(e->db, insert_then, &mode), DUET_ERR_INTEGRITY);
    assert_duet_ok(duet_commit(e->db));
    assert_int_equal(sum_ids(e->check), 1);
}

/* ------------------------------------------------------------------ */
/* PostgreSQL: isolation, read-only, retries, row locks                */
/* ------------------------------------------------------------------ */

static void test_pg_isolation_read_only(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0");
    duet_result *r = NULL;
    assert_duet_ok(duet_begin_with(e->db, DUET_SERIALIZABLE, DUET_TXN_READ_ONLY));
    assert_duet_ok(duet_fetch_val(e->db, "SHOW transaction_isolation", NULL, 0, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "serializable");
    duet_result_free(r);
    assert_int_not_equal(duet_execute(e->db, "INSERT INTO txn_t VALUES (1, 1)", NULL, NULL, NULL),
                         DUET_OK);
    assert_string_equal(duet_errsqlstate(), "25006"); /* read-only transaction */
    /* a failed transaction: commit rolls it back and says so */
    assert_int_equal(duet_commit(e->db), DUET_ERR_DATABASE);
    assert_int_equal(duet_txn_depth(e->db), 0);
    assert_duet_ok(duet_begin_with(e->db, DUET_REPEATABLE_READ, 0));
    assert_duet_ok(duet_fetch_val(e->db, "SHOW transaction_isolation", NULL, 0, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "repeatable read");
    duet_result_free(r);
    assert_duet_ok(duet_rollback(e->db));
    /* a value outside the enum, or an unknown flag, is a misuse, not a silent default */
    assert_int_equal(duet_begin_with(e->db, (duet_isolation)42, 0), DUET_ERR_MISUSE);
    assert_int_equal(duet_begin_with(e->db, DUET_ISOLATION_DEFAULT, 0x80u), DUET_ERR_MISUSE);
    assert_int_equal(duet_txn_depth(e->db), 0);
}

typedef struct retry_arg {
    duet_db *other;
    int attempts;
} retry_arg;

/* The first attempt collides with a concurrent committed update: 40001. */
static duet_status bump(duet_db *db, void *p) {
    retry_arg *a = p;
    a->attempts++;
    int64_t v = test_int(db, "SELECT v FROM txn_t WHERE id = 1");
    if (a->attempts == 1) test_exec(a->other, "UPDATE txn_t SET v = v + 100 WHERE id = 1");
    duet_params *p2 = duet_params_new();
    duet_bind_int64(p2, "v", v + 1);
    duet_status st = duet_execute(db, "UPDATE txn_t SET v = :v WHERE id = 1", p2, NULL, NULL);
    duet_params_free(p2);
    return st;
}

static void test_pg_atomic_retry(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0");
    insert(e->check, 1);
    retry_arg a = {e->check, 0};
    assert_duet_ok(duet_atomic_with(e->db, DUET_REPEATABLE_READ, 0, 3, bump, &a));
    assert_int_equal(a.attempts, 2);
    assert_int_equal(test_int(e->check, "SELECT v FROM txn_t WHERE id = 1"), 101);
    /* without retries the serialization failure is returned */
    a.attempts = 0;
    assert_int_equal(duet_atomic_with(e->db, DUET_REPEATABLE_READ, 0, 0, bump, &a),
                     DUET_ERR_SERIALIZATION);
    assert_int_equal(a.attempts, 1);
}

static void test_pg_select_for_update(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0");
    insert(e->check, 1);
    assert_duet_ok(duet_begin(e->db));
    assert_int_equal(test_int(e->db, "SELECT v FROM txn_t WHERE id = 1 FOR UPDATE"), 0);
    /* another session cannot take the row lock meanwhile */
    assert_duet_ok(duet_begin(e->check));
    duet_result *r = NULL;
    assert_int_equal(
        duet_fetch_val(e->check, "SELECT v FROM txn_t WHERE id = 1 FOR UPDATE NOWAIT", NULL, 0, &r),
        DUET_ERR_TIMEOUT); /* 55P03 lock not available */
    assert_duet_ok(duet_rollback(e->check));
    test_exec(e->db, "UPDATE txn_t SET v = v + 1 WHERE id = 1");
    assert_duet_ok(duet_commit(e->db));
    assert_duet_ok(duet_begin(e->check));
    assert_int_equal(test_int(e->check, "SELECT v FROM txn_t WHERE id = 1 FOR UPDATE NOWAIT"), 1);
    assert_duet_ok(duet_commit(e->check));
}

/* ------------------------------------------------------------------ */
/* SQLite: writers take the lock at BEGIN                              */
/* ------------------------------------------------------------------ */

static void test_sqlite_immediate(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0");
    char *url = engine_url(e, "min_connections=0&busy_timeout=100");
    duet_db *other;
    assert_duet_ok(duet_open(url, &other));
    free(url);
    assert_duet_ok(duet_begin(e->db)); /* BEGIN IMMEDIATE: the write lock now */
    assert_int_equal(duet_begin(other), DUET_ERR_TIMEOUT);
    assert_int_equal(duet_txn_depth(other), 0);
    assert_duet_ok(duet_rollback(e->db));
    /* a read-only transaction takes no write lock */
    assert_duet_ok(duet_begin_with(e->db, DUET_ISOLATION_DEFAULT, DUET_TXN_READ_ONLY));
    assert_int_equal(count(e->db), 0);
    assert_duet_ok(duet_begin(other));
    insert(other, 1);
    assert_duet_ok(duet_commit(other));
    assert_duet_ok(duet_commit(e->db));
    duet_close(other);
}

typedef struct writer_arg {
    duet_db *db;
    int base;
    int failures;
    char error[256];
} writer_arg;

/* Reads then writes: the pattern that deadlocks two DEFERRED SQLite writers. */
static duet_status read_then_insert(duet_db *db, void *p) {
    int *id = p;
    duet_result *r = NULL;
    duet_status st = duet_fetch_val(db, "SELECT count(*) FROM txn_t", NULL, 0, &r);
    duet_result_free(r);
    if (st != DUET_OK) return st;
    duet_params *params = duet_params_new();
    duet_bind_int64(params, "id", *id);
    st = duet_execute(db, "INSERT INTO txn_t (id, v) VALUES (:id, 0)", params, NULL, NULL);
    duet_params_free(params);
    return st;
}

static void *writer_thread(void *p) {
    writer_arg *a = p;
    for (int i = 0; i < 25; i++) {
        int id = a->base + i;
        if (duet_atomic(a->db, read_then_insert, &id) != DUET_OK && a->failures++ == 0)
            snprintf(a->error, sizeof a->error, "%s", duet_errmsg());
    }
    return NULL;
}

static void test_sqlite_concurrent_writers(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0&max_connections=4");
    pthread_t th[8];
    writer_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (writer_arg){.db = e->db, .base = 1000 * (i + 1)};
        pthread_create(&th[i], NULL, writer_thread, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        if (args[i].failures)
            fail_msg("writer %d: %d failures: %s", i, args[i].failures, args[i].error);
    }
    assert_int_equal(count(e->check), 200);
}

/* ------------------------------------------------------------------ */
/* transaction_timeout                                                 */
/* ------------------------------------------------------------------ */

static void test_txn_timeout_idle(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0&transaction_timeout=0.3&transaction_cleanup_interval=0.1");
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 1);
    test_sleep_ms(900);
    duet_result *r = NULL;
    assert_int_equal(duet_fetch_val(e->db, "SELECT 1", NULL, 0, &r), DUET_ERR_EXPIRED);
    assert_string_equal(duet_errmsg(), "transaction expired after 0.3 s");
    assert_int_equal(duet_commit(e->db), DUET_ERR_EXPIRED); /* nothing silently committed */
    assert_int_equal(duet_txn_depth(e->db), 0);
    assert_int_equal(count(e->check), 0);
    /* the connection is usable again */
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 2);
    assert_duet_ok(duet_commit(e->db));
    assert_int_equal(count(e->check), 1);
}

static void test_txn_timeout_running(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0&transaction_timeout=0.3&transaction_cleanup_interval=0.1");
    const char *slow = e->pg ? "SELECT pg_sleep(20)"
                             : "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                               "WHERE x < 2000000000) SELECT count(*) FROM c";
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 1);
    double t0 = test_now_ms();
    assert_int_not_equal(duet_execute(e->db, slow, NULL, NULL, NULL), DUET_OK); /* interrupted */
    assert_true(test_now_ms() - t0 < 10000);
    duet_result *r = NULL;
    assert_int_equal(duet_fetch_val(e->db, "SELECT 1", NULL, 0, &r), DUET_ERR_EXPIRED);
    assert_duet_ok(duet_rollback(e->db)); /* rollback of an expired transaction is fine */
    assert_int_equal(duet_txn_depth(e->db), 0);
    assert_int_equal(count(e->check), 0);
    assert_int_equal(count(e->db), 0);
}

/* ------------------------------------------------------------------ */
/* Handing a transaction to another thread                             */
/* ------------------------------------------------------------------ */

typedef struct finish_arg {
    duet_db *db;
    duet_conn *conn;
    int depth;
    duet_status st;
} finish_arg;

static void *finish_thread(void *p) {
    finish_arg *a = p;
    a->st = duet_attach(a->db, a->conn);
    if (a->st != DUET_OK) return NULL;
    a->depth = duet_txn_depth(a->db);
    insert(a->db, 2);
    a->st = duet_commit(a->db);
    return NULL;
}

static void test_txn_handoff(void **state) {
    engine *e = *state;
    engine_open(e, "min_connections=0");
    assert_duet_ok(duet_begin(e->db));
    insert(e->db, 1);
    duet_conn *conn;
    assert_duet_ok(duet_detach(e->db, &conn));
    assert_int_equal(duet_txn_depth(e->db), 0); /* no longer this thread's */
    finish_arg a = {e->db, conn, 0, DUET_OK};
    pthread_t th;
    pthread_create(&th, NULL, finish_thread, &a);
    pthread_join(th, NULL);
    assert_int_equal(a.st, DUET_OK);
    assert_int_equal(a.depth, 1);
    assert_int_equal(sum_ids(e->check), 3);
}

#define BOTH(fn)                                                      \
    cmocka_unit_test_setup_teardown(fn, setup_pg, teardown),          \
        cmocka_unit_test_setup_teardown(fn, setup_sqlite, teardown)

int main(void) {
    alarm(TEST_WATCHDOG_SECONDS); /* a hang fails this binary instead of the whole suite */
    const struct CMUnitTest tests[] = {
        BOTH(test_nested),
        BOTH(test_rollback_outer),
        BOTH(test_misuse),
        BOTH(test_thread_local),
        BOTH(test_atomic),
        BOTH(test_txn_timeout_idle),
        BOTH(test_txn_timeout_running),
        BOTH(test_txn_handoff),
        cmocka_unit_test_setup_teardown(test_pg_isolation_read_only, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_atomic_retry, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_pg_select_for_update, setup_pg, teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_immediate, setup_sqlite, teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_concurrent_writers, setup_sqlite, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
