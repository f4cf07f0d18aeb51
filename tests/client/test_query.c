/*
 * test_query.c — execute, execute_many, fetch_all/one/val, iterate and typed
 * getters: one scenario run on PostgreSQL (DUET_PG_URL) and on SQLite (a file
 * in a temporary directory), expecting the same results from both.
 */
#include <unistd.h>

#include "testutil.h"

typedef struct engine {
    duet_db *db;
    bool pg;
    char dir[64];
} engine;

static engine sq, pg;

static int open_sqlite(engine *e) {
    char url[128];
    snprintf(e->dir, sizeof e->dir, "/tmp/duet-test-query.XXXXXX");
    if (!mkdtemp(e->dir)) return -1;
    snprintf(url, sizeof url, "sqlite:///%s/q.db?min_connections=1", e->dir);
    if (duet_open(url, &e->db) != DUET_OK) {
        fprintf(stderr, "open %s: %s\n", url, duet_errmsg());
        return -1;
    }
    return 0;
}

static int open_pg(engine *e) {
    char url[512];
    const char *base = getenv("DUET_PG_URL");
    if (!base || !*base) {
        fprintf(stderr, "DUET_PG_URL is not set: run the tests through make check\n");
        return -1;
    }
    snprintf(url, sizeof url, "%s%smin_connections=1&max_connections=4", base,
             strchr(base, '?') ? "&" : "?");
    if (duet_open(url, &e->db) != DUET_OK) {
        fprintf(stderr, "open: %s\n", duet_errmsg());
        return -1;
    }
    e->pg = true;
    return 0;
}

static int setup(void **state) {
    (void)state;
    return open_sqlite(&sq) || open_pg(&pg) ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    duet_close(sq.db);
    duet_close(pg.db);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", sq.dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A fresh items table with the same meaning on both engines. */
static void create_items(engine *e) {
    assert_duet_ok(duet_execute(e->db, "DROP TABLE IF EXISTS items", NULL, NULL, NULL));
    assert_duet_ok(duet_execute(
        e->db,
        e->pg ? "CREATE TABLE items (id bigserial PRIMARY KEY, name text UNIQUE NOT NULL, "
                "qty integer, price double precision, ok boolean, data bytea, note text)"
              : "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, "
                "qty INTEGER, price REAL, ok BOOLEAN, data BLOB, note TEXT)",
        NULL, NULL, NULL));
}

static int64_t count_items(engine *e) {
    duet_result *r;
    int64_t n = -1;
    assert_duet_ok(duet_fetch_val(e->db, "SELECT count(*) FROM items", NULL, 0, &r));
    assert_duet_ok(duet_result_int64(r, 0, 0, &n));
    duet_result_free(r);
    return n;
}

static duet_params *item(const char *name, int64_t qty) {
    duet_params *p = duet_params_new();
    duet_bind_text(p, "name", name);
    duet_bind_int64(p, "qty", qty);
    return p;
}

static void test_execute(void **state) {
    engine *e = *state;
    int64_t affected = -1, id = -1;
    create_items(e);
    duet_params *p = item("apple", 3);
    assert_duet_ok(duet_execute(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty) RETURNING id",
                                p, &affected, &id));
    assert_int_equal(affected, 1);
    assert_int_equal(id, 1);
    duet_params_free(p);
    p = item("pear", 5);
    assert_duet_ok(duet_execute(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty) RETURNING id",
                                p, &affected, &id));
    assert_int_equal(id, 2);
    duet_params_free(p);

    p = duet_params_new();
    duet_bind_int64(p, NULL, 1);
    assert_duet_ok(duet_execute(e->db, "UPDATE items SET qty = qty + ?", p, &affected, &id));
    assert_int_equal(affected, 2);
    assert_int_equal(id, 0);
    assert_duet_ok(duet_execute(e->db, "SELECT * FROM items", NULL, &affected, NULL));
    assert_int_equal(affected, 0); /* reads change nothing, on both engines */
    assert_duet_ok(duet_execute(e->db, "DELETE FROM items WHERE qty > $1", p, &affected, NULL));
    assert_int_equal(affected, 2);
    duet_params_free(p);
}

static void test_execute_many(void **state) {
    engine *e = *state;
    enum { N = 2500 }; /* more than one pipeline batch on PostgreSQL */
    duet_params *rows[N];
    int64_t affected = 0;
    char name[32];
    create_items(e);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "item-%d", i);
        rows[i] = item(name, i);
    }
    assert_duet_ok(duet_execute_many(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty)",
                                     rows, N, &affected));
    assert_int_equal(affected, N);
    assert_int_equal(count_items(e), N);

    /* All or nothing: a duplicate in the middle keeps none of the batch. */
    duet_params *again[3] = {item("new-1", 1), item("item-700", 2), item("new-2", 3)};
    assert_int_equal(duet_execute_many(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty)",
                                       again, 3, &affected),
                     DUET_ERR_INTEGRITY);
    if (e->pg) assert_string_equal(duet_errsqlstate(), "23505");
    assert_non_null(strstr(duet_errdetail(), "row 1"));
    assert_int_equal(count_items(e), N);

    /* Inside a transaction the failed batch rolls back to its savepoint only. */
    assert_duet_ok(duet_begin(e->db));
    assert_duet_ok(duet_execute(e->db, "DELETE FROM items WHERE qty < 100", NULL, NULL, NULL));
    assert_int_equal(duet_execute_many(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty)",
                                       again, 3, NULL),
                     DUET_ERR_INTEGRITY);
    assert_int_equal(count_items(e), N - 100);
    assert_duet_ok(duet_commit(e->db));
    assert_int_equal(count_items(e), N - 100);

    /* A row missing a parameter fails before anything runs. */
    duet_params_clear(again[2]);
    assert_int_equal(duet_execute_many(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty)",
                                       again, 3, NULL),
                     DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "execute_many: row 2: parameter :name is not bound");
    assert_duet_ok(duet_execute_many(e->db, "INSERT INTO items (name) VALUES (:name)", NULL, 0, NULL));
    for (int i = 0; i < 3; i++) duet_params_free(again[i]);
    for (int i = 0; i < N; i++) duet_params_free(rows[i]);
}

static void insert_typed(engine *e) {
    create_items(e);
    duet_params *p = duet_params_new();
    duet_bind_text(p, "name", "widget");
    duet_bind_int64(p, "qty", -42);
    duet_bind_double(p, "price", 2.5);
    duet_bind_bool(p, "ok", true);
    duet_bind_bytes(p, "data", "\x00\x01\xfe\xff", 4);
    duet_bind_null(p, "note");
    assert_duet_ok(duet_execute(e->db,
                                "INSERT INTO items (name, qty, price, ok, data, note) "
                                "VALUES (:name, :qty, :price, :ok, :data, :note)",
                                p, NULL, NULL));
    duet_params_free(p);
}

static void test_typed_getters(void **state) {
    engine *e = *state;
    duet_result *r;
    int64_t i;
    double d;
    bool b;
    size_t len;
    insert_typed(e);
    assert_duet_ok(duet_fetch_all(e->db, "SELECT name, qty, price, ok, data, note FROM items", NULL, &r));
    assert_int_equal(duet_result_nrows(r), 1);
    assert_int_equal(duet_result_ncols(r), 6);
    assert_string_equal(duet_result_colname(r, 4), "data");
    assert_null(duet_result_colname(r, 6));
    assert_int_equal(duet_result_colindex(r, "price"), 2);
    assert_int_equal(duet_result_colindex(r, "nope"), -1);
    assert_string_equal(duet_result_text(r, 0, 0), "widget");
    assert_string_equal(duet_result_text(r, 0, 1), "-42");
    assert_string_equal(duet_result_text(r, 0, 2), "2.5");
    assert_duet_ok(duet_result_int64(r, 0, 1, &i));
    assert_int_equal(i, -42);
    assert_duet_ok(duet_result_double(r, 0, 2, &d));
    assert_float_equal(d, 2.5, 0);
    assert_duet_ok(duet_result_double(r, 0, 1, &d));
    assert_float_equal(d, -42, 0);
    assert_duet_ok(duet_result_bool(r, 0, 3, &b));
    assert_true(b);
    const unsigned char *bytes = duet_result_bytes(r, 0, 4, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(bytes, "\x00\x01\xfe\xff", 4);
    assert_true(duet_result_isnull(r, 0, 5));
    assert_false(duet_result_isnull(r, 0, 4));
    assert_null(duet_result_text(r, 0, 5));
    assert_null(duet_result_bytes(r, 0, 5, &len));
    assert_int_equal(duet_result_int64(r, 0, 5, &i), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "duet_result_int64: value at row 0, column \"note\" is NULL");
    assert_int_equal(duet_result_int64(r, 0, 0, &i), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "value at row 0, column \"name\" is not an integer: \"widget\"");
    assert_int_equal(duet_result_int64(r, 1, 0, &i), DUET_ERR_MISUSE);
    assert_int_equal(duet_result_bool(r, 0, 0, &b), DUET_ERR_MISUSE);
    assert_true(duet_result_isnull(r, 9, 9));
    duet_result_free(r);

    /* Computed values, NULL and a cast bound from text. */
    duet_params *p = duet_params_new();
    duet_bind_text(p, "n", "7");
    assert_duet_ok(duet_fetch_one(e->db, "SELECT CAST(:n AS INTEGER) * 6 AS answer, NULL AS empty",
                                  p, &r));
    assert_duet_ok(duet_result_int64(r, 0, 0, &i));
    assert_int_equal(i, 42);
    assert_string_equal(duet_result_colname(r, 0), "answer");
    assert_true(duet_result_isnull(r, 0, 1));
    duet_result_free(r);
    duet_params_free(p);
}

static void test_fetch_one_and_val(void **state) {
    engine *e = *state;
    duet_result *r = (duet_result *)1;
    create_items(e);
    duet_params *rows[3] = {item("a", 1), item("b", 2), item("c", 3)};
    assert_duet_ok(duet_execute_many(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty)",
                                     rows, 3, NULL));
    for (int i = 0; i < 3; i++) duet_params_free(rows[i]);

    assert_int_equal(duet_fetch_one(e->db, "SELECT * FROM items WHERE qty > 10", NULL, &r),
                     DUET_ERR_NOT_FOUND);
    assert_null(r);
    assert_string_equal(duet_errmsg(), "fetch_one: the query returned no row");
    assert_int_equal(duet_fetch_one(e->db, "SELECT * FROM items", NULL, &r), DUET_ERR_MULTIPLE_ROWS);
    assert_string_equal(duet_errmsg(), "fetch_one: the query returned 3 rows, expected one");
    assert_duet_ok(duet_fetch_one(e->db, "SELECT name FROM items WHERE qty = 2", NULL, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "b");
    duet_result_free(r);

    assert_duet_ok(duet_fetch_val(e->db, "SELECT qty, name FROM items ORDER BY qty DESC", NULL, 1, &r));
    assert_int_equal(duet_result_nrows(r), 1);
    assert_int_equal(duet_result_ncols(r), 1);
    assert_string_equal(duet_result_colname(r, 0), "name");
    assert_string_equal(duet_result_text(r, 0, 0), "c");
    duet_result_free(r);
    assert_int_equal(duet_fetch_val(e->db, "SELECT qty FROM items WHERE qty < 0", NULL, 0, &r),
                     DUET_ERR_NOT_FOUND);
    assert_int_equal(duet_fetch_val(e->db, "SELECT qty FROM items", NULL, 3, &r), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "fetch_val: column 3 out of range (1 columns)");

    /* bytes survive the copy fetch_val makes */
    duet_params *p = duet_params_new();
    duet_bind_bytes(p, NULL, "\xff\x00", 2);
    assert_duet_ok(duet_fetch_val(e->db, "SELECT ?", p, 0, &r));
    size_t len;
    const unsigned char *b = duet_result_bytes(r, 0, 0, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(b, "\xff\x00", 2);
    duet_result_free(r);
    duet_params_free(p);
}

static const char *series_sql =
    "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
    "SELECT i, 'row ' || i AS label FROM s";

static void test_iterate(void **state) {
    engine *e = *state;
    duet_rows *rows;
    const duet_result *row;
    duet_params *p = duet_params_new();
    duet_bind_int64(p, "n", 20000);
    assert_duet_ok(duet_iterate(e->db, series_sql, p, &rows));
    duet_params_free(p); /* the values were taken when the query started */
    int64_t sum = 0, count = 0, v;
    duet_status st;
    while ((st = duet_rows_next(rows, &row)) == DUET_ROW) {
        assert_int_equal(duet_result_nrows(row), 1);
        assert_duet_ok(duet_result_int64(row, 0, 0, &v));
        sum += v;
        count++;
        if (count == 20000) assert_string_equal(duet_result_text(row, 0, 1), "row 20000");
    }
    assert_int_equal(st, DUET_DONE);
    assert_int_equal(duet_rows_next(rows, &row), DUET_DONE);
    duet_rows_close(rows);
    assert_int_equal(count, 20000);
    assert_int_equal(sum, (int64_t)20000 * 20001 / 2);

    /* Stopping early leaves the connection ready for the next statement. */
    p = duet_params_new();
    duet_bind_int64(p, "n", 1000000);
    assert_duet_ok(duet_iterate(e->db, series_sql, p, &rows));
    assert_int_equal(duet_rows_next(rows, &row), DUET_ROW);
    duet_rows_close(rows);
    duet_params_free(p);
    duet_result *r;
    assert_duet_ok(duet_fetch_val(e->db, "SELECT 5", NULL, 0, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "5");
    duet_result_free(r);

    /* A failing query fails at iterate (SQLite prepares) or at the first rows_next. */
    st = duet_iterate(e->db, "SELECT x FROM nowhere", NULL, &rows);
    if (st == DUET_OK) {
        st = duet_rows_next(rows, &row);
        duet_rows_close(rows);
    }
    assert_int_equal(st, DUET_ERR_SYNTAX);
}

static void test_errors(void **state) {
    engine *e = *state;
    create_items(e);
    duet_params *p = item("dup", 1);
    assert_duet_ok(duet_execute(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty)", p, NULL, NULL));
    assert_int_equal(duet_execute(e->db, "INSERT INTO items (name, qty) VALUES (:name, :qty)", p, NULL, NULL),
                     DUET_ERR_INTEGRITY);
    if (e->pg) {
        assert_string_equal(duet_errsqlstate(), "23505");
        assert_string_equal(duet_errdetail(), "Key (name)=(dup) already exists.");
    } else {
        assert_string_equal(duet_errmsg(), "UNIQUE constraint failed: items.name");
    }
    assert_int_equal(duet_execute(e->db, "INSERT INTO items (qty) VALUES (1)", NULL, NULL, NULL),
                     DUET_ERR_INTEGRITY);
    if (e->pg) assert_string_equal(duet_errsqlstate(), "23502");

    assert_int_equal(duet_execute(e->db, "SELEC 1", NULL, NULL, NULL), DUET_ERR_SYNTAX);
    if (e->pg) assert_string_equal(duet_errsqlstate(), "42601");
    assert_non_null(strstr(duet_errmsg(), "syntax error"));
    assert_int_equal(duet_execute(e->db, "SELECT * FROM no_such_table", NULL, NULL, NULL),
                     DUET_ERR_SYNTAX);
    assert_non_null(strstr(duet_errmsg(), "no_such_table"));
    if (e->pg) assert_string_equal(duet_errsqlstate(), "42P01");
    assert_int_equal(duet_execute(e->db, "SELECT 1; SELECT 2", NULL, NULL, NULL),
                     e->pg ? DUET_ERR_SYNTAX : DUET_ERR_MISUSE);
    assert_int_equal(duet_execute(e->db, "SELECT :nope", p, NULL, NULL), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "parameter :nope is not bound");
    assert_int_equal(duet_execute(NULL, "SELECT 1", NULL, NULL, NULL), DUET_ERR_MISUSE);
    assert_int_equal(duet_execute(e->db, NULL, NULL, NULL, NULL), DUET_ERR_MISUSE);
    duet_params_free(p);

    /* The connection is still good after all that. */
    duet_result *r;
    assert_duet_ok(duet_fetch_val(e->db, "SELECT 'ok'", NULL, 0, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "ok");
    duet_result_free(r);
}

/* PostgreSQL-only syntax: :: casts next to :name, dollar quotes, the jsonb ?? escape. */
static void test_pg_syntax(void **state) {
    engine *e = *state;
    duet_result *r;
    duet_params *p = duet_params_new();
    duet_bind_text(p, "when", "2024-02-29");
    duet_bind_text(p, "doc", "{\"k\": 1}");
    assert_duet_ok(duet_fetch_one(e->db,
                                  "SELECT (:when::date + 1)::text AS next, $$ :not_a_param $$ AS lit, "
                                  ":doc::jsonb ?? 'k' AS has_k, ':x' AS s -- :y",
                                  p, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "2024-03-01");
    assert_string_equal(duet_result_text(r, 0, 1), " :not_a_param ");
    bool b;
    assert_duet_ok(duet_result_bool(r, 0, 2, &b));
    assert_true(b);
    assert_string_equal(duet_result_text(r, 0, 3), ":x");
    duet_result_free(r);
    duet_params_free(p);
}

/* A connection killed under a pinned session is a connection error; the pool then recovers. */
static void test_pg_connection_lost(void **state) {
    engine *e = *state;
    duet_result *r;
    int64_t pid;
    assert_duet_ok(duet_acquire(e->db));
    assert_duet_ok(duet_fetch_val(e->db, "SELECT pg_backend_pid()", NULL, 0, &r));
    assert_duet_ok(duet_result_int64(r, 0, 0, &pid));
    duet_result_free(r);
    duet_db *killer;
    char url[512];
    snprintf(url, sizeof url, "%s%smin_connections=1", test_pg_url(),
             strchr(test_pg_url(), '?') ? "&" : "?");
    assert_duet_ok(duet_open(url, &killer));
    duet_params *p = duet_params_new();
    duet_bind_int64(p, NULL, pid);
    assert_duet_ok(duet_execute(killer, "SELECT pg_terminate_backend($1::int)", p, NULL, NULL));
    duet_params_free(p);
    duet_close(killer);
    usleep(100 * 1000);
    assert_int_equal(duet_execute(e->db, "SELECT 1", NULL, NULL, NULL), DUET_ERR_CONNECTION);
    duet_release(e->db);
    assert_duet_ok(duet_fetch_val(e->db, "SELECT 1", NULL, 0, &r));
    duet_result_free(r);
}

/* More values than the backends keep on the stack (16): the allocating paths. */
static void test_many_params(void **state) {
    engine *e = *state;
    enum { N = 20 };
    char sql[512] = "INSERT INTO items (name, qty) VALUES (:name, 0", key[16];
    duet_params *rows[2];
    create_items(e);
    for (int i = 0; i < N - 1; i++) {
        snprintf(key, sizeof key, "p%d", i);
        strcat(sql, " + :");
        strcat(sql, key);
    }
    strcat(sql, ")");
    for (int r = 0; r < 2; r++) {
        rows[r] = duet_params_new();
        duet_bind_text(rows[r], "name", r ? "second" : "first");
        for (int i = 0; i < N - 1; i++) {
            snprintf(key, sizeof key, "p%d", i);
            duet_bind_int64(rows[r], key, i + r);
        }
    }
    assert_duet_ok(duet_execute(e->db, sql, rows[0], NULL, NULL));
    duet_bind_text(rows[0], "name", "third");
    assert_duet_ok(duet_execute_many(e->db, sql, rows, 2, NULL));
    duet_result *r;
    assert_duet_ok(duet_fetch_val(e->db, "SELECT sum(qty) FROM items", NULL, 0, &r));
    assert_string_equal(duet_result_text(r, 0, 0), "532"); /* 171 + 171 + 190 */
    duet_result_free(r);
    duet_rows *it;
    const duet_result *row;
    assert_duet_ok(duet_iterate(e->db, "SELECT name FROM items WHERE qty = :p18 + 153 ORDER BY name",
                                rows[0], &it));
    assert_int_equal(duet_rows_next(it, &row), DUET_ROW);
    assert_string_equal(duet_result_text(row, 0, 0), "first");
    assert_int_equal(duet_rows_next(it, &row), DUET_ROW);
    assert_string_equal(duet_result_text(row, 0, 0), "third");
    assert_int_equal(duet_rows_next(it, &row), DUET_DONE);
    duet_rows_close(it);
    for (int i = 0; i < 2; i++) duet_params_free(rows[i]);
}

/* Statement logging: DEBUG lines with the duration, the SQL and the connection name; no values. */
static char log_lines[4096];
static char log_name[64];

static void capture(void *arg, duet_log_level level, const char *name, const char *line) {
    (void)arg;
    if (level != DUET_LOG_DEBUG) return;
    snprintf(log_name, sizeof log_name, "%s", name);
    size_t used = strlen(log_lines);
    snprintf(log_lines + used, sizeof log_lines - used, "%s\n", line);
}

static void test_statement_log(void **state) {
    engine *e = *state;
    log_lines[0] = '\0';
    duet_set_log(capture, NULL, DUET_LOG_DEBUG);
    duet_params *p = duet_params_new();
    duet_bind_text(p, "secret", "hunter2");
    duet_result *r;
    assert_duet_ok(duet_fetch_val(e->db, "SELECT CAST(:secret AS TEXT)", p, 0, &r));
    duet_result_free(r);
    assert_int_equal(duet_execute(e->db, "SELEC 1", NULL, NULL, NULL), DUET_ERR_SYNTAX);
    duet_set_log(NULL, NULL, DUET_LOG_DEBUG);
    duet_params_free(p);
    assert_string_equal(log_name, "default");
    assert_non_null(strstr(log_lines, " ms: SELECT CAST(:secret AS TEXT)\n"));
    assert_non_null(strstr(log_lines, " ms, failed (syntax): SELEC 1\n"));
    assert_null(strstr(log_lines, "hunter2"));
}

/* Each test runs on both engines, named "sqlite: ..." and "postgresql: ...". */
#define BOTH(fn) {"sqlite: " #fn, fn, NULL, NULL, &sq}, {"postgresql: " #fn, fn, NULL, NULL, &pg}

int main(void) {
    const struct CMUnitTest tests[] = {
        BOTH(test_execute),   BOTH(test_execute_many), BOTH(test_typed_getters),
        BOTH(test_fetch_one_and_val), BOTH(test_iterate), BOTH(test_errors),
        BOTH(test_statement_log), BOTH(test_many_params),
        {"postgresql: test_pg_syntax", test_pg_syntax, NULL, NULL, &pg},
        {"postgresql: test_pg_connection_lost", test_pg_connection_lost, NULL, NULL, &pg},
    };
    return cmocka_run_group_tests_name("query", tests, setup, teardown);
}
