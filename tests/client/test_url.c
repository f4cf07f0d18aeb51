/*
 * test_url.c — duet_config_parse, the key/value form and describe.
 *
 * Every URL form of the README parsed to the right fields, a table of
 * malformed URLs each with its exact error code and message, and the
 * promise that a password never shows in an error or a description.
 */
#include "testutil.h"

#include "internal.h"

static duet_config *parse_ok(const char *url) {
    duet_config *cfg = NULL;
    duet_status st = duet_config_parse(url, &cfg);
    if (st != DUET_OK) fail_msg("%s -> %s: %s", url, duet_status_name(st), duet_errmsg());
    return cfg;
}

static void assert_pg(const duet_config *cfg, const char *key, const char *want) {
    const char *got = duet__config_pg_get(cfg, key);
    if (!want) {
        if (got) fail_msg("%s: expected unset, got \"%s\"", key, got);
        return;
    }
    if (!got) fail_msg("%s: expected \"%s\", got unset", key, want);
    assert_string_equal(got, want);
}

static void test_postgres_full(void **state) {
    (void)state;
    duet_config *cfg = parse_ok(
        "postgresql://app%20user:p%40ss%3Aw%2Fd@db.example.com:5433/my%20app"
        "?sslmode=require&application_name=web&connect_timeout=5");
    assert_int_equal(cfg->backend, DUET_POSTGRESQL);
    assert_string_equal(cfg->scheme, "postgresql");
    assert_pg(cfg, "user", "app user");
    assert_pg(cfg, "password", "p@ss:w/d");
    assert_pg(cfg, "host", "db.example.com");
    assert_pg(cfg, "port", "5433");
    assert_pg(cfg, "dbname", "my app");
    assert_pg(cfg, "sslmode", "require");
    assert_pg(cfg, "application_name", "web");
    assert_pg(cfg, "connect_timeout", "5");
    duet_config_free(cfg);
}

static void test_postgres_short_forms(void **state) {
    (void)state;
    duet_config *cfg = parse_ok("postgres://localhost/mydb");
    assert_int_equal(cfg->backend, DUET_POSTGRESQL);
    assert_string_equal(cfg->scheme, "postgres");
    assert_pg(cfg, "host", "localhost");
    assert_pg(cfg, "dbname", "mydb");
    assert_pg(cfg, "user", NULL);
    assert_pg(cfg, "password", NULL);
    assert_pg(cfg, "port", NULL);
    duet_config_free(cfg);

    cfg = parse_ok("postgresql://");
    assert_int_equal(cfg->pg_nparams, 0);
    duet_config_free(cfg);

    cfg = parse_ok("postgresql://u:@h/db"); /* an empty password is a password */
    assert_pg(cfg, "user", "u");
    assert_pg(cfg, "password", "");
    duet_config_free(cfg);

    cfg = parse_ok("postgresql+asyncpg://h/db"); /* Python's driver suffix is ignored */
    assert_int_equal(cfg->backend, DUET_POSTGRESQL);
    duet_config_free(cfg);

    cfg = parse_ok("postgresql://[::1]:6000/db");
    assert_pg(cfg, "host", "::1");
    assert_pg(cfg, "port", "6000");
    duet_config_free(cfg);

    cfg = parse_ok("postgresql://%2Fvar%2Frun%2Fpostgresql/db");
    assert_pg(cfg, "host", "/var/run/postgresql");
    duet_config_free(cfg);
}

static void test_postgres_hosts_and_socket(void **state) {
    (void)state;
    duet_config *cfg =
        parse_ok("postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write");
    assert_pg(cfg, "host", "h1,h2");
    assert_pg(cfg, "port", "5432,5433");
    assert_pg(cfg, "target_session_attrs", "read-write");
    duet_config_free(cfg);

    cfg = parse_ok("postgresql://h1,h2:5433/db");
    assert_pg(cfg, "host", "h1,h2");
    assert_pg(cfg, "port", ",5433");
    duet_config_free(cfg);

    /* What DUET_PG_URL looks like: the host query option is a socket directory. */
    cfg = parse_ok("postgresql://postgres@/postgres?host=/tmp/x&port=5432");
    assert_pg(cfg, "user", "postgres");
    assert_pg(cfg, "host", "/tmp/x");
    assert_pg(cfg, "port", "5432");
    assert_pg(cfg, "dbname", "postgres");
    duet_config_free(cfg);
}

static void test_pool_defaults(void **state) {
    (void)state;
    duet_config *cfg = parse_ok("postgresql://h/db");
    const duet_pool_settings *p = &cfg->pool;
    assert_int_equal(p->max_connections, 20);
    assert_int_equal(p->min_connections, 5);
    assert_true(p->acquire_timeout_ms == 30e3);
    assert_true(p->idle_timeout_ms == 600e3);
    assert_true(p->max_lifetime_ms == 1800e3);
    assert_true(p->test_before_acquire);
    assert_true(p->transaction_timeout_ms == 300e3);
    assert_true(p->transaction_cleanup_interval_ms == 60e3);
    assert_true(p->leak_threshold_ms == 0);
    assert_false(p->force_rollback);
    assert_false(p->pooler_transaction);
    duet_config_free(cfg);
}

static void test_pool_options(void **state) {
    (void)state;
    duet_config *cfg = parse_ok(
        "postgresql://h/db?max_connections=10&min_connections=2&acquire_timeout=0.5"
        "&idle_timeout=500ms&max_lifetime=1h&test_before_acquire=false&transaction_timeout=30"
        "&transaction_cleanup_interval=5&leak_threshold=2s&force_rollback=true&pooler=transaction");
    const duet_pool_settings *p = &cfg->pool;
    assert_int_equal(p->max_connections, 10);
    assert_int_equal(p->min_connections, 2);
    assert_true(p->acquire_timeout_ms == 500);
    assert_true(p->idle_timeout_ms == 500);
    assert_true(p->max_lifetime_ms == 3600e3);
    assert_false(p->test_before_acquire);
    assert_true(p->transaction_timeout_ms == 30e3);
    assert_true(p->transaction_cleanup_interval_ms == 5e3);
    assert_true(p->leak_threshold_ms == 2e3);
    assert_true(p->force_rollback);
    assert_true(p->pooler_transaction);
    assert_int_equal(cfg->pg_nparams, 2); /* host and dbname only: pool options are not libpq's */
    duet_config_free(cfg);

    /* max_connections below the default minimum lowers the minimum. */
    cfg = parse_ok("postgresql://h/db?max_connections=1");
    assert_int_equal(cfg->pool.max_connections, 1);
    assert_int_equal(cfg->pool.min_connections, 1);
    duet_config_free(cfg);
}

static void test_databases_aliases(void **state) {
    (void)state;
    duet_config *cfg = parse_ok("postgresql://h/db?min_size=2&max_size=8&pool_recycle=60&ssl=true");
    assert_int_equal(cfg->pool.min_connections, 2);
    assert_int_equal(cfg->pool.max_connections, 8);
    assert_true(cfg->pool.max_lifetime_ms == 60e3);
    assert_pg(cfg, "sslmode", "require");
    assert_pg(cfg, "ssl", NULL);
    duet_config_free(cfg);

    cfg = parse_ok("postgresql://h/db?pool_size=7&ssl=false");
    assert_int_equal(cfg->pool.max_connections, 7);
    assert_pg(cfg, "sslmode", "disable");
    duet_config_free(cfg);
}

static void test_sqlite_forms(void **state) {
    (void)state;
    duet_config *cfg = parse_ok("sqlite:///app.db");
    assert_int_equal(cfg->backend, DUET_SQLITE);
    assert_string_equal(cfg->sqlite_path, "app.db");
    assert_string_equal(cfg->journal_mode, "WAL");
    assert_string_equal(cfg->synchronous, "NORMAL");
    assert_int_equal(cfg->cache_size, 10000);
    assert_int_equal(cfg->busy_timeout, 5000);
    assert_null(cfg->sqlite_shared_name);
    duet_config_free(cfg);

    cfg = parse_ok("sqlite:////tmp/abs/path.db");
    assert_string_equal(cfg->sqlite_path, "/tmp/abs/path.db");
    duet_config_free(cfg);

    cfg = parse_ok("sqlite:///:memory:");
    assert_string_equal(cfg->sqlite_path, ":memory:");
    duet_config_free(cfg);

    cfg = parse_ok("sqlite:///data/my%20app.db");
    assert_string_equal(cfg->sqlite_path, "data/my app.db");
    duet_config_free(cfg);

    cfg = parse_ok("sqlite:///a.db?journal_mode=delete&synchronous=full&cache_size=-2000"
                   "&busy_timeout=100&sqlite_busy_timeout=250&max_connections=1");
    assert_string_equal(cfg->journal_mode, "DELETE");
    assert_string_equal(cfg->synchronous, "FULL");
    assert_int_equal(cfg->cache_size, -2000);
    assert_int_equal(cfg->busy_timeout, 250);
    assert_int_equal(cfg->pool.max_connections, 1);
    duet_config_free(cfg);
}

typedef struct bad_case {
    const char *url;
    duet_status code;
    const char *message;
} bad_case;

static const bad_case bad_urls[] = {
    {"", DUET_ERR_CONFIG, "empty URL"},
    {"mysql://u:p@localhost:3306/db", DUET_ERR_UNSUPPORTED, "backend not supported: mysql"},
    {"mysql+aiomysql://h/db", DUET_ERR_UNSUPPORTED, "backend not supported: mysql"},
    {"oracle://h/db", DUET_ERR_UNSUPPORTED, "backend not supported: oracle"},
    {"localhost/db", DUET_ERR_CONFIG,
     "malformed URL: expected scheme://..., e.g. postgresql://host/db or sqlite:///app.db"},
    {"://h/db", DUET_ERR_CONFIG,
     "malformed URL: expected scheme://..., e.g. postgresql://host/db or sqlite:///app.db"},
    {"postgresql://h/db?foo=1", DUET_ERR_CONFIG, "unknown option \"foo\""},
    {"postgresql://h/db?max_connections=abc", DUET_ERR_CONFIG,
     "invalid value for max_connections: \"abc\" (expected an integer >= 1)"},
    {"postgresql://h/db?max_connections=0", DUET_ERR_CONFIG,
     "invalid value for max_connections: \"0\" (expected an integer >= 1)"},
    {"postgresql://h/db?min_connections=-1", DUET_ERR_CONFIG,
     "invalid value for min_connections: \"-1\" (expected an integer >= 0)"},
    {"postgresql://h/db?min_connections=10&max_connections=5", DUET_ERR_CONFIG,
     "max_connections (5) is less than min_connections (10)"},
    {"postgresql://h/db?max_connections=5&min_connections=10", DUET_ERR_CONFIG,
     "min_connections (10) is greater than max_connections (5)"},
    {"postgresql://h/db?acquire_timeout=soon", DUET_ERR_CONFIG,
     "invalid value for acquire_timeout: \"soon\" (expected seconds, e.g. 30, 0.5 or 500ms)"},
    {"postgresql://h/db?idle_timeout=-1", DUET_ERR_CONFIG,
     "invalid value for idle_timeout: \"-1\" (expected seconds, e.g. 30, 0.5 or 500ms)"},
    {"postgresql://h/db?max_lifetime=10days", DUET_ERR_CONFIG,
     "invalid value for max_lifetime: \"10days\" (expected seconds, e.g. 30, 0.5 or 500ms)"},
    {"postgresql://h/db?transaction_cleanup_interval=0", DUET_ERR_CONFIG,
     "invalid value for transaction_cleanup_interval: \"0\" (expected a duration above 0)"},
    {"postgresql://h/db?test_before_acquire=maybe", DUET_ERR_CONFIG,
     "invalid value for test_before_acquire: \"maybe\" (expected true or false)"},
    {"postgresql://h/db?pooler=statement", DUET_ERR_CONFIG,
     "invalid value for pooler: \"statement\" (expected session or transaction)"},
    {"postgresql://h/db?ssl=perhaps", DUET_ERR_CONFIG,
     "invalid value for ssl: \"perhaps\" (expected true or false)"},
    {"postgresql://h/db?sslmode=sometimes", DUET_ERR_CONFIG,
     "invalid value for sslmode: \"sometimes\" (expected disable, allow, prefer, require, "
     "verify-ca or verify-full)"},
    {"postgresql://h/db?target_session_attrs=any-old", DUET_ERR_CONFIG,
     "invalid value for target_session_attrs: \"any-old\" (expected any, read-write, read-only, "
     "primary, standby or prefer-standby)"},
    {"postgresql://h/db?connect_timeout=ten", DUET_ERR_CONFIG,
     "invalid value for connect_timeout: \"ten\" (expected whole seconds >= 0)"},
    {"postgresql://h:99999/db", DUET_ERR_CONFIG,
     "invalid value for port: \"99999\" (expected a port number 1-65535, or a comma-separated "
     "list)"},
    {"postgresql://h:abc/db", DUET_ERR_CONFIG,
     "invalid value for port: \"abc\" (expected a port number 1-65535, or a comma-separated list)"},
    {"postgresql://h:/db", DUET_ERR_CONFIG, "malformed URL: empty port after ':'"},
    {"postgresql://h1,,h2/db", DUET_ERR_CONFIG, "malformed URL: empty host in a host list"},
    {"postgresql://[::1/db", DUET_ERR_CONFIG, "malformed URL: unclosed '[' in the host"},
    {"postgresql://u:p%zz@h/db", DUET_ERR_CONFIG,
     "malformed percent-encoding in the password of the URL"},
    {"postgresql://u%4@h/db", DUET_ERR_CONFIG,
     "malformed percent-encoding in the user name of the URL"},
    {"postgresql://h/db%00x", DUET_ERR_CONFIG,
     "malformed percent-encoding in the database name of the URL"},
    {"postgresql://h/db?max_connections", DUET_ERR_CONFIG,
     "option \"max_connections\" has no value"},
    {"postgresql://h/db?=1", DUET_ERR_CONFIG, "malformed URL: empty option name"},
    {"postgresql://h/db?journal_mode=WAL", DUET_ERR_CONFIG,
     "option \"journal_mode\" applies to sqlite URLs only"},
    {"sqlite:///a.db?sslmode=require", DUET_ERR_CONFIG,
     "option \"sslmode\" applies to postgresql URLs only"},
    {"sqlite://host/a.db", DUET_ERR_CONFIG,
     "malformed sqlite URL: it has no host; write sqlite:///relative.db or "
     "sqlite:////absolute/path.db"},
    {"sqlite:///", DUET_ERR_CONFIG, "malformed sqlite URL: missing database path"},
    {"sqlite:///a.db?journal_mode=fast", DUET_ERR_CONFIG,
     "invalid value for journal_mode: \"fast\" (expected DELETE, TRUNCATE, PERSIST, MEMORY, WAL "
     "or OFF)"},
    {"sqlite:///a.db?synchronous=sometimes", DUET_ERR_CONFIG,
     "invalid value for synchronous: \"sometimes\" (expected OFF, NORMAL, FULL or EXTRA)"},
    {"sqlite:///a.db?busy_timeout=1.5", DUET_ERR_CONFIG,
     "invalid value for busy_timeout: \"1.5\" (expected an integer >= 0)"},
    {"sqlite:///a.db?cache_size=big", DUET_ERR_CONFIG,
     "invalid value for cache_size: \"big\" (expected an integer: pages, or -KiB)"},
};

static void test_malformed_table(void **state) {
    (void)state;
    size_t n = sizeof bad_urls / sizeof bad_urls[0];
    assert_true(n >= 15);
    for (size_t i = 0; i < n; i++) {
        duet_config *cfg = (duet_config *)1;
        duet_status st = duet_config_parse(bad_urls[i].url, &cfg);
        if (st != bad_urls[i].code || strcmp(duet_errmsg(), bad_urls[i].message) != 0)
            fail_msg("%s\n  want %s: %s\n  got  %s: %s", bad_urls[i].url,
                     duet_status_name(bad_urls[i].code), bad_urls[i].message,
                     duet_status_name(st), duet_errmsg());
        assert_null(cfg);
        assert_int_equal(duet_errcode(), bad_urls[i].code);
    }
}

/* The password is "s3cr3tPW" (or starts with it) in every URL. */
static void test_password_never_shown(void **state) {
    (void)state;
    static const char *const urls[] = {
        "postgresql://u:s3cr3tPW@h:bad/db",
        "postgresql://u:s3cr3tPW@h/db?foo=1",
        "postgresql://u:s3cr3tPW%@h/db",
        "postgresql://u:s3cr3tPW%zz@h/db",
        "postgresql://u:s3cr3tPW@h/db?sslmode=nope",
        "postgresql://u:s3cr3t/PW@h:x/db",
        "postgresql://u:s3cr3tPW@[::1/db",
        "postgresql://h/db?password=s3cr3tPW&max_connections=x",
        "postgresql://h/db?password=s3cr3tPW%G1",
        "mysql://u:s3cr3tPW@h/db",
        "s3cr3tPW",
        "x:s3cr3tPW@h/db",
        "postgresql://u:s3cr3t?PW@h:x/db", /* '?' in a password, unencoded, as libpq takes it */
        "postgresql://u:s3cr3t?PW=1@h/db?foo=1",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        duet_config *cfg;
        duet_status st = duet_config_parse(urls[i], &cfg);
        assert_int_not_equal(st, DUET_OK);
        if (strstr(duet_errmsg(), "s3cr3t") || strstr(duet_errdetail(), "s3cr3t"))
            fail_msg("password shown for %s: %s", urls[i], duet_errmsg());
    }
    duet_config *cfg = parse_ok("postgresql://u:s3cr3t?PW@h/db?sslmode=require");
    assert_pg(cfg, "password", "s3cr3t?PW");
    assert_pg(cfg, "host", "h");
    assert_pg(cfg, "sslmode", "require");
    duet_config_free(cfg);
    cfg = parse_ok("postgresql://u:s3cr3tPW@h/db?sslmode=require");
    char *d = duet_config_describe(cfg);
    assert_non_null(d);
    assert_null(strstr(d, "s3cr3t"));
    assert_string_equal(d, "postgresql://u:***@h/db?sslmode=require");
    duet_free(d);
    duet_config_free(cfg);
}

static void test_key_value_form(void **state) {
    (void)state;
    duet_config *cfg = duet_config_new();
    assert_non_null(cfg);
    assert_int_equal(duet_config_set(cfg, "host", "h"), DUET_ERR_CONFIG);
    assert_string_equal(duet_errmsg(), "set \"scheme\" before \"host\"");
    assert_duet_ok(duet_config_set(cfg, "max_connections", "4")); /* pool keys need no scheme */
    assert_duet_ok(duet_config_set(cfg, "scheme", "postgres"));
    assert_duet_ok(duet_config_set(cfg, "host", "db.internal"));
    assert_duet_ok(duet_config_set(cfg, "port", "6432"));
    assert_duet_ok(duet_config_set(cfg, "user", "app"));
    assert_duet_ok(duet_config_set(cfg, "password", "s3cr3tPW"));
    assert_duet_ok(duet_config_set(cfg, "database", "main"));
    assert_duet_ok(duet_config_set(cfg, "ssl", "true"));
    assert_duet_ok(duet_config_set(cfg, "pooler", "transaction"));
    assert_int_equal(duet_config_set(cfg, "scheme", "sqlite"), DUET_ERR_CONFIG);
    assert_int_equal(duet_config_set(cfg, "driver", "x"), DUET_ERR_CONFIG);
    assert_string_equal(duet_errmsg(), "unknown option \"driver\"");
    assert_int_equal(duet_config_set(cfg, "port", "0"), DUET_ERR_CONFIG);
    assert_int_equal(duet_config_set(NULL, "port", "1"), DUET_ERR_MISUSE);
    assert_pg(cfg, "dbname", "main");
    assert_pg(cfg, "port", "6432");

    char *d = duet_config_describe(cfg);
    assert_string_equal(d, "postgres://app:***@db.internal:6432/main?sslmode=require"
                           "&max_connections=4&pooler=transaction");
    duet_free(d);

    duet_config *copy = duet__config_copy(cfg);
    duet_config_free(cfg);
    assert_pg(copy, "password", "s3cr3tPW");
    assert_pg(copy, "host", "db.internal");
    assert_int_equal(copy->pool.max_connections, 4);
    assert_true(copy->pool.pooler_transaction);
    duet_config_free(copy);

    cfg = duet_config_new();
    assert_duet_ok(duet_config_set(cfg, "scheme", "sqlite"));
    assert_duet_ok(duet_config_set(cfg, "database", "/tmp/x.db"));
    assert_duet_ok(duet_config_set(cfg, "journal_mode", "truncate"));
    assert_int_equal(duet_config_set(cfg, "host", "h"), DUET_ERR_CONFIG);
    assert_string_equal(duet_errmsg(), "option \"host\" applies to postgresql URLs only");
    d = duet_config_describe(cfg);
    assert_string_equal(d, "sqlite:////tmp/x.db?journal_mode=TRUNCATE");
    duet_free(d);
    duet_config_free(cfg);
}

/* describe's output parses back to the same settings. */
static void test_describe_round_trip(void **state) {
    (void)state;
    static const char *const urls[] = {
        "postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write&min_connections=1",
        "postgresql://postgres@/postgres?host=/tmp/x&port=5432&acquire_timeout=0.25",
        "postgresql://[::1]:6000/db?application_name=a%26b&force_rollback=true",
        "sqlite:///:memory:?cache_size=-64&max_lifetime=500ms",
        "sqlite:////tmp/a%20b.db?synchronous=OFF&idle_timeout=0",
    };
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        duet_config *a = parse_ok(urls[i]);
        char *d = duet_config_describe(a);
        duet_config *b = parse_ok(d);
        assert_int_equal(a->backend, b->backend);
        assert_int_equal(a->pg_nparams, b->pg_nparams);
        for (size_t k = 0; k < a->pg_nparams; k++)
            assert_pg(b, a->pg_params[k].key, a->pg_params[k].value);
        if (a->sqlite_path) assert_string_equal(a->sqlite_path, b->sqlite_path);
        assert_memory_equal(&a->pool, &b->pool, sizeof a->pool);
        assert_int_equal(a->cache_size, b->cache_size);
        assert_string_equal(a->synchronous, b->synchronous);
        duet_free(d);
        duet_config_free(a);
        duet_config_free(b);
    }
}

static void test_misuse(void **state) {
    (void)state;
    duet_config *cfg;
    assert_int_equal(duet_config_parse(NULL, &cfg), DUET_ERR_MISUSE);
    assert_int_equal(duet_config_parse("sqlite:///a.db", NULL), DUET_ERR_MISUSE);
    duet_config_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_postgres_full),
        cmocka_unit_test(test_postgres_short_forms),
        cmocka_unit_test(test_postgres_hosts_and_socket),
        cmocka_unit_test(test_pool_defaults),
        cmocka_unit_test(test_pool_options),
        cmocka_unit_test(test_databases_aliases),
        cmocka_unit_test(test_sqlite_forms),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_password_never_shown),
        cmocka_unit_test(test_key_value_form),
        cmocka_unit_test(test_describe_round_trip),
        cmocka_unit_test(test_misuse),
    };
    return cmocka_run_group_tests_name("url", tests, NULL, NULL);
}
