/*
 * test_registry.c — named connections: init several at once (all or
 * nothing), get by name, register and unregister at run time, close all
 * rolling back open transactions.
 */
#include <unistd.h>

#include "testutil.h"

static char dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/duet-test-registry.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *file_url(const char *name) {
    static char url[4][160];
    static int next;
    char *u = url[next++ % 4];
    snprintf(u, sizeof url[0], "sqlite:///%s/%s.db?min_connections=1", dir, name);
    return u;
}

static void test_init_and_get(void **state) {
    (void)state;
    duet_registry *reg = duet_registry_new();
    const char *names[] = {"default", "analytics", "cache"};
    const char *urls[] = {file_url("main"), file_url("analytics"), "sqlite:///:memory:"};
    assert_duet_ok(duet_registry_init(reg, names, urls, 3));
    assert_int_equal(duet_registry_count(reg), 3);
    assert_string_equal(duet_registry_name(reg, 1), "analytics");
    assert_null(duet_registry_name(reg, 3));

    duet_db *db, *other;
    assert_duet_ok(duet_get(reg, "analytics", &db));
    assert_string_equal(duet_db_name(db), "analytics");
    assert_int_equal(duet_db_backend(db), DUET_SQLITE);
    assert_duet_ok(duet_get(reg, "default", &other));
    assert_ptr_not_equal(db, other);

    /* Separate databases: a table in one is not in the other. */
    assert_duet_ok(duet_execute(db, "CREATE TABLE events (id INTEGER PRIMARY KEY)", NULL, NULL, NULL));
    assert_int_equal(duet_execute(other, "SELECT * FROM events", NULL, NULL, NULL), DUET_ERR_SYNTAX);

    assert_int_equal(duet_get(reg, "replica", &db), DUET_ERR_NOT_FOUND);
    assert_null(db);
    assert_string_equal(duet_errmsg(),
                        "no connection named \"replica\" (known: default, analytics, cache)");
    duet_registry_close(reg);
}

static void test_register_unregister(void **state) {
    (void)state;
    duet_registry *reg = duet_registry_new();
    duet_db *db;
    assert_int_equal(duet_get(reg, "x", &db), DUET_ERR_NOT_FOUND);
    assert_string_equal(duet_errmsg(), "no connection named \"x\" (none registered)");

    assert_duet_ok(duet_register(reg, "tenant_1", file_url("t1")));
    assert_duet_ok(duet_register(reg, "tenant_2", file_url("t2")));
    assert_int_equal(duet_register(reg, "tenant_1", file_url("t1")), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "connection \"tenant_1\" is already registered");
    assert_int_equal(duet_register(reg, "", file_url("t3")), DUET_ERR_MISUSE);
    assert_int_equal(duet_register(reg, "bad", "mysql://h/db"), DUET_ERR_UNSUPPORTED);
    assert_string_equal(duet_errmsg(), "connection \"bad\": backend not supported: mysql");

    duet_config *cfg = duet_config_new();
    assert_duet_ok(duet_config_set(cfg, "scheme", "sqlite"));
    assert_duet_ok(duet_config_set(cfg, "database", ":memory:"));
    assert_duet_ok(duet_config_set(cfg, "min_connections", "1"));
    assert_duet_ok(duet_register_config(reg, "tenant_3", cfg));
    duet_config_free(cfg);
    assert_int_equal(duet_registry_count(reg), 3);

    assert_duet_ok(duet_unregister(reg, "tenant_2"));
    assert_int_equal(duet_registry_count(reg), 2);
    assert_string_equal(duet_registry_name(reg, 1), "tenant_3");
    assert_int_equal(duet_unregister(reg, "tenant_2"), DUET_ERR_NOT_FOUND);
    assert_string_equal(duet_errmsg(),
                        "no connection named \"tenant_2\" (known: tenant_1, tenant_3)");
    /* The name can be used again. */
    assert_duet_ok(duet_register(reg, "tenant_2", file_url("t2")));
    assert_duet_ok(duet_get(reg, "tenant_2", &db));
    assert_duet_ok(duet_ping(db));
    duet_registry_close(reg);
}

/* A bad third URL: nothing stays registered, and the error names the connection. */
static void test_init_all_or_nothing(void **state) {
    (void)state;
    duet_registry *reg = duet_registry_new();
    const char *names[] = {"default", "analytics", "replica"};
    const char *urls[] = {file_url("a"), file_url("b"), "sqlite:///x.db?journal_mode=fast"};
    assert_int_equal(duet_registry_init(reg, names, urls, 3), DUET_ERR_CONFIG);
    assert_string_equal(duet_errmsg(),
                        "connection \"replica\": invalid value for journal_mode: \"fast\" "
                        "(expected DELETE, TRUNCATE, PERSIST, MEMORY, WAL or OFF)");
    assert_int_equal(duet_registry_count(reg), 0);

    const char *dup_names[] = {"a", "a"};
    assert_int_equal(duet_registry_init(reg, dup_names, urls, 2), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "connection \"a\" is given twice");
    assert_int_equal(duet_registry_count(reg), 0);

    /* A server that is not there: a connection error, nothing registered. */
    const char *pg_urls[] = {file_url("c"), "postgresql://postgres@/postgres?host=/nonexistent&min_connections=1"};
    assert_int_equal(duet_registry_init(reg, names, pg_urls, 2), DUET_ERR_CONNECTION);
    assert_non_null(strstr(duet_errmsg(), "connection \"analytics\": "));
    assert_int_equal(duet_registry_count(reg), 0);
    duet_registry_close(reg);
}

/* Closing everything rolls back what is still open. */
static void test_close_rolls_back(void **state) {
    (void)state;
    duet_registry *reg = duet_registry_new();
    duet_db *db;
    assert_duet_ok(duet_register(reg, "default", file_url("rb")));
    assert_duet_ok(duet_get(reg, "default", &db));
    assert_duet_ok(duet_execute(db, "CREATE TABLE t (x INTEGER)", NULL, NULL, NULL));
    assert_duet_ok(duet_execute(db, "INSERT INTO t VALUES (1)", NULL, NULL, NULL));
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(duet_execute(db, "INSERT INTO t VALUES (2)", NULL, NULL, NULL));
    duet_registry_close(reg);

    assert_duet_ok(duet_open(file_url("rb"), &db));
    duet_result *r;
    assert_duet_ok(duet_fetch_val(db, "SELECT count(*) FROM t", NULL, 0, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "1");
    duet_result_free(r);
    duet_close(db);
}

/* Same on PostgreSQL, plus a named database next to a SQLite one. */
static void test_postgres_entry(void **state) {
    (void)state;
    char url[512];
    const char *base = test_pg_url();
    snprintf(url, sizeof url, "%s%smin_connections=1", base, strchr(base, '?') ? "&" : "?");
    duet_registry *reg = duet_registry_new();
    const char *names[] = {"default", "local"};
    const char *urls[] = {url, file_url("local")};
    assert_duet_ok(duet_registry_init(reg, names, urls, 2));
    duet_db *db;
    assert_duet_ok(duet_get(reg, "default", &db));
    assert_int_equal(duet_db_backend(db), DUET_POSTGRESQL);
    assert_duet_ok(duet_execute(db, "DROP TABLE IF EXISTS reg_t", NULL, NULL, NULL));
    assert_duet_ok(duet_execute(db, "CREATE TABLE reg_t (x int)", NULL, NULL, NULL));
    assert_duet_ok(duet_begin(db));
    assert_duet_ok(duet_execute(db, "INSERT INTO reg_t VALUES (1)", NULL, NULL, NULL));
    duet_registry_close(reg);

    assert_duet_ok(duet_open(url, &db));
    duet_result *r;
    assert_duet_ok(duet_fetch_val(db, "SELECT count(*) FROM reg_t", NULL, 0, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "0");
    duet_result_free(r);
    assert_duet_ok(duet_execute(db, "DROP TABLE reg_t", NULL, NULL, NULL));
    duet_close(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_get),
        cmocka_unit_test(test_register_unregister),
        cmocka_unit_test(test_init_all_or_nothing),
        cmocka_unit_test(test_close_rolls_back),
        cmocka_unit_test(test_postgres_entry),
    };
    return cmocka_run_group_tests_name("registry", tests, setup, teardown);
}
