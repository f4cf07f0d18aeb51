/*
 * test_execute_many.c — PostgreSQL execute_many with and without
 * pooler=transaction: the named statement it prepares once per connection
 * (and reuses on the next call), never one with pooler=transaction, the
 * same all-or-nothing results and errors (failing row, SQLSTATE) either
 * way, and recovery when the cached statement goes stale.
 *
 * Every scenario runs pinned (duet_acquire) so pg_prepared_statements shows
 * the session that ran the batches.
 */
#include "testutil.h"

enum { N = 1500 }; /* more than one pipeline batch (1000 rows) */

typedef struct mode {
    const char *opts;
    bool pooler_transaction;
    duet_db *db;
} mode;

static mode named = {"min_connections=1&max_connections=2", false, NULL};
static mode unnamed = {"min_connections=1&max_connections=2&pooler=transaction", true, NULL};

static const char *insert_sql = "INSERT INTO em_items (name, qty) VALUES (:name, :qty)";

static int setup(void **state) {
    mode *m = *state;
    char *url = test_pg_url_with(m->opts);
    duet_status st = duet_open(url, &m->db);
    free(url);
    if (st != DUET_OK) {
        fprintf(stderr, "open: %s\n", duet_errmsg());
        return -1;
    }
    if (duet_acquire(m->db) != DUET_OK) return -1;
    return duet_execute(m->db,
                        "CREATE TEMP TABLE em_items (id bigserial PRIMARY KEY, "
                        "name text UNIQUE NOT NULL, qty integer)",
                        NULL, NULL, NULL) == DUET_OK
               ? 0
               : -1;
}

static int teardown(void **state) {
    mode *m = *state;
    duet_release(m->db);
    duet_close(m->db);
    m->db = NULL;
    return 0;
}

/* rows[i] = (prefix-i, qty0 + i); a NULL qty where i % null_every == 1 (0: never). */
static duet_params **make_rows(const char *prefix, int n, int qty0, int null_every) {
    duet_params **rows = malloc(n * sizeof *rows);
    char name[64];
    assert_non_null(rows);
    for (int i = 0; i < n; i++) {
        rows[i] = duet_params_new();
        snprintf(name, sizeof name, "%s-%d", prefix, i);
        duet_bind_text(rows[i], "name", name);
        if (null_every && i % null_every == 1)
            duet_bind_null(rows[i], "qty");
        else
            duet_bind_int64(rows[i], "qty", qty0 + i);
    }
    return rows;
}

static void free_rows(duet_params **rows, int n) {
    for (int i = 0; i < n; i++) duet_params_free(rows[i]);
    free(rows);
}

/* Named statements execute_many left in this session. */
static int64_t statements(mode *m) {
    return test_int(m->db, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'duet:many:%'");
}

static int64_t count(mode *m) { return test_int(m->db, "SELECT count(*) FROM em_items"); }

static void many_ok(mode *m, const char *sql, duet_params **rows, int n) {
    int64_t affected = -1;
    assert_duet_ok(duet_execute_many(m->db, sql, rows, n, &affected));
    assert_int_equal(affected, n);
}

/* Twice in a row on one connection: one statement, prepared once, then reused. */
static void test_twice(void **state) {
    mode *m = *state;
    test_exec(m->db, "TRUNCATE em_items");
    duet_params **a = make_rows("a", N, 0, 0), **b = make_rows("b", N, 0, 0);
    many_ok(m, insert_sql, a, N);
    int64_t after_first = statements(m);
    many_ok(m, insert_sql, b, N);
    assert_int_equal(count(m), 2 * N);
    assert_int_equal(test_int(m->db, "SELECT sum(qty) FROM em_items"), (int64_t)N * (N - 1));
    assert_int_equal(after_first, m->pooler_transaction ? 0 : 1);
    assert_int_equal(statements(m), after_first); /* reused, not prepared again */
    /* A short batch reuses the statement too (and prepares none of its own). */
    duet_params **c = make_rows("c", 3, 0, 0);
    many_ok(m, insert_sql, c, 3);
    assert_int_equal(statements(m), after_first);
    assert_int_equal(count(m), 2 * N + 3);
    free_rows(a, N), free_rows(b, N), free_rows(c, 3);
}

/* A failing row loses the whole batch, names the row and keeps the SQLSTATE; the next call works. */
static void test_after_error(void **state) {
    mode *m = *state;
    test_exec(m->db, "TRUNCATE em_items");
    duet_params **a = make_rows("x", N, 0, 0);
    many_ok(m, insert_sql, a, N);
    int64_t before = statements(m);

    /* Row 1200 (second batch) duplicates row 5 of the first call. */
    duet_params **dup = make_rows("y", N, 0, 0);
    duet_bind_text(dup[1200], "name", "x-5");
    int64_t affected = -1;
    assert_int_equal(duet_execute_many(m->db, insert_sql, dup, N, &affected), DUET_ERR_INTEGRITY);
    assert_int_equal(affected, 0);
    assert_string_equal(duet_errsqlstate(), "23505");
    assert_string_equal(duet_errdetail(), "Key (name)=(x-5) already exists. execute_many: row 1200 failed.");
    assert_int_equal(count(m), N);

    /* A row the server cannot read (at Bind, not Parse): its own number. */
    duet_bind_text(dup[1200], "name", "y-1200");
    duet_bind_text(dup[30], "qty", "thirty");
    assert_int_equal(duet_execute_many(m->db, insert_sql, dup, N, NULL), DUET_ERR_DATABASE);
    assert_string_equal(duet_errsqlstate(), "22P02");
    assert_non_null(strstr(duet_errdetail(), "execute_many: row 30 failed."));
    assert_int_equal(count(m), N);

    /* Fixed, the same batch goes through on the same connection. */
    duet_bind_int64(dup[30], "qty", 30);
    many_ok(m, insert_sql, dup, N);
    assert_int_equal(count(m), 2 * N);

    /* SQL the server rejects outright fails at row 0 and prepares nothing. */
    assert_int_equal(duet_execute_many(m->db, "INSERT INTO em_nowhere (name, qty) VALUES (:name, :qty)",
                                       dup, N, NULL),
                     DUET_ERR_SYNTAX);
    assert_string_equal(duet_errsqlstate(), "42P01");
    assert_string_equal(duet_errdetail(), "execute_many: row 0 failed.");
    assert_int_equal(statements(m), before);
    assert_int_equal(count(m), 2 * N);

    /* Inside a transaction the failed batch rolls back to its savepoint only. */
    assert_duet_ok(duet_begin(m->db));
    test_exec(m->db, "DELETE FROM em_items WHERE qty < 100");
    duet_params **w = make_rows("w", N, 0, 0), **z = make_rows("z", N, 0, 0);
    duet_bind_text(w[1400], "name", "x-500");
    assert_int_equal(duet_execute_many(m->db, insert_sql, w, N, NULL), DUET_ERR_INTEGRITY);
    assert_string_equal(duet_errsqlstate(), "23505");
    assert_non_null(strstr(duet_errdetail(), "execute_many: row 1400 failed."));
    assert_int_equal(count(m), 2 * N - 200);
    many_ok(m, insert_sql, z, N); /* the savepoint path, reusing the statement */
    assert_duet_ok(duet_commit(m->db));
    assert_int_equal(count(m), 3 * N - 200);
    assert_int_equal(statements(m), before);
    free_rows(a, N), free_rows(dup, N), free_rows(w, N), free_rows(z, N);
}

/* NULLs among numbers: rows whose types differ from the first row's still insert what they hold. */
static void test_mixed_types(void **state) {
    mode *m = *state;
    test_exec(m->db, "TRUNCATE em_items");
    duet_params **a = make_rows("n", N, 0, 3); /* row 1 is NULL, row 0 a number */
    many_ok(m, insert_sql, a, N);
    assert_int_equal(test_int(m->db, "SELECT count(*) FROM em_items WHERE qty IS NULL"), N / 3);
    duet_params **b = make_rows("m", N, 0, 3);
    duet_bind_null(b[0], "qty"); /* now the first row is NULL */
    duet_bind_text(b[2], "qty", "2"); /* and one is text */
    many_ok(m, insert_sql, b, N);
    assert_int_equal(test_int(m->db, "SELECT count(*) FROM em_items WHERE qty IS NULL"), 2 * (N / 3) + 1);
    assert_int_equal(test_int(m->db, "SELECT qty FROM em_items WHERE name = 'm-2'"), 2);
    assert_int_equal(count(m), 2 * N);
    free_rows(a, N), free_rows(b, N);
}

/* A cached statement gone stale (DEALLOCATE ALL, a changed result type) is not the caller's error. */
static void test_stale_statement(void **state) {
    mode *m = *state;
    test_exec(m->db, "TRUNCATE em_items");
    duet_params **a = make_rows("s", N, 0, 0), **b = make_rows("t", N, 0, 0),
                **c = make_rows("u", N, 0, 0), **d = make_rows("v", N, 0, 0);
    many_ok(m, insert_sql, a, N);
    test_exec(m->db, "DEALLOCATE ALL"); /* also what DISCARD ALL does */
    many_ok(m, insert_sql, b, N);
    assert_int_equal(count(m), 2 * N);

    const char *returning = "INSERT INTO em_items (name, qty) VALUES (:name, :qty) RETURNING *";
    many_ok(m, returning, c, N);
    test_exec(m->db, "ALTER TABLE em_items ADD COLUMN note text");
    many_ok(m, returning, d, N);
    assert_int_equal(count(m), 4 * N);
    test_exec(m->db, "ALTER TABLE em_items DROP COLUMN note");
    free_rows(a, N), free_rows(b, N), free_rows(c, N), free_rows(d, N);
}

#define BOTH(fn)                                                                   \
    {"named: " #fn, fn, setup, teardown, &named},                                  \
    {                                                                              \
        "pooler=transaction: " #fn, fn, setup, teardown, &unnamed                  \
    }

int main(void) {
    const struct CMUnitTest tests[] = {
        BOTH(test_twice),
        BOTH(test_after_error),
        BOTH(test_mixed_types),
        BOTH(test_stale_statement),
    };
    return cmocka_run_group_tests_name("execute_many", tests, NULL, NULL);
}
