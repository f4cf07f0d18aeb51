/*
 * test_pool_restart.c — the test cluster is stopped and started again under
 * a live pool: callers get the server's reason within acquire_timeout (no
 * one hangs), a caller whose acquire_timeout outlasts the outage just
 * waits and succeeds, and the pool refills to min_connections afterwards.
 *
 * Needs DUET_PGDIR and DUET_ROOT (set by tests/run-suites.sh), because it
 * runs tests/pgcluster.sh down / up on that cluster.
 */
#include <pthread.h>
#include <stdbool.h>

#include "testutil.h"

static bool cluster_down; /* so that teardown brings it back even when the test fails */

static int cluster_run(const char *action) {
    const char *root = getenv("DUET_ROOT"), *dir = getenv("DUET_PGDIR");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s/tests/pgcluster.sh' %s '%s'", root, action, dir);
    int rc = system(cmd);
    if (rc == 0) cluster_down = strcmp(action, "down") == 0;
    return rc;
}

static void cluster(const char *action) {
    if (cluster_run(action) != 0) fail_msg("pgcluster.sh %s failed", action);
}

static int teardown(void **state) {
    (void)state;
    if (cluster_down) cluster_run("up"); /* the suites after this one need the server */
    return 0;
}

typedef struct query_arg {
    duet_db *db;
    duet_status st;
    char msg[512];
} query_arg;

static void *query_thread(void *p) {
    query_arg *a = p;
    duet_result *r = NULL;
    a->st = duet_fetch_val(a->db, "SELECT 1", NULL, 0, &r);
    snprintf(a->msg, sizeof a->msg, "%s", duet_errmsg());
    duet_result_free(r);
    return NULL;
}

static size_t pool_size(duet_db *db) {
    duet_pool_stats s;
    duet_pool_stats_get(db, &s);
    return s.size;
}

static void test_server_restart(void **state) {
    (void)state;
    if (!getenv("DUET_PGDIR") || !getenv("DUET_ROOT")) skip();
    char *fast_url = test_pg_url_with("max_connections=4&min_connections=2&acquire_timeout=1");
    char *patient_url = test_pg_url_with("max_connections=4&min_connections=2&acquire_timeout=30");
    duet_db *fast, *patient;
    assert_duet_ok(duet_open(fast_url, &fast));
    assert_duet_ok(duet_open(patient_url, &patient));
    assert_int_equal(test_int(fast, "SELECT 1"), 1);
    assert_int_equal(test_int(patient, "SELECT 1"), 1);

    cluster("down");
    test_sleep_ms(600); /* past the half second in which a used connection is trusted */
    double t0 = test_now_ms();
    query_arg a = {fast, DUET_OK, ""};
    query_thread(&a); /* the server's reason, within acquire_timeout */
    double waited = test_now_ms() - t0;
    assert_int_equal(a.st, DUET_ERR_CONNECTION);
    assert_true(waited < 5000);
    assert_non_null(strstr(a.msg, "last connect error"));

    query_arg b = {patient, DUET_OK, ""};
    pthread_t th;
    pthread_create(&th, NULL, query_thread, &b); /* waits out the outage */
    test_sleep_ms(300);
    cluster("up");
    pthread_join(th, NULL);
    if (b.st != DUET_OK) fail_msg("query across the restart: %s", b.msg);

    assert_int_equal(test_int(fast, "SELECT 1"), 1); /* recovered */
    double t1 = test_now_ms();
    while ((pool_size(fast) < 2 || pool_size(patient) < 2) && test_now_ms() - t1 < 5000)
        test_sleep_ms(50);
    assert_true(pool_size(fast) >= 2); /* refilled to min_connections */
    assert_true(pool_size(patient) >= 2);
    duet_close(fast);
    duet_close(patient);
    free(fast_url);
    free(patient_url);
}

int main(void) {
    alarm(TEST_WATCHDOG_SECONDS); /* a hang fails this binary instead of the whole suite */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_server_restart, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
