/*
 * test_params.c — the :name / ? / $n translator and parameter binding.
 *
 * What is not a placeholder must come out untouched: casts, strings,
 * quoted identifiers, comments, dollar quotes.  Binding errors name the
 * parameter.
 */
#include "testutil.h"

#include "internal.h"

/* Translates sql for backend and compares the native text and slot count. */
static void expect(duet_backend backend, const char *sql, const char *want, size_t nslots) {
    duet_sql t;
    duet_status st = duet__sql_translate(sql, backend, &t);
    if (st != DUET_OK) fail_msg("%s -> %s: %s", sql, duet_status_name(st), duet_errmsg());
    if (strcmp(t.text, want) != 0) fail_msg("%s\n  want %s\n  got  %s", sql, want, t.text);
    assert_int_equal(t.nslots, nslots);
    duet__sql_free(&t);
}

static void both(const char *sql, const char *want_pg, const char *want_sqlite, size_t nslots) {
    expect(DUET_POSTGRESQL, sql, want_pg, nslots);
    expect(DUET_SQLITE, sql, want_sqlite, nslots);
}

static void test_named(void **state) {
    (void)state;
    both("SELECT :a, :b, :a", "SELECT $1, $2, $1", "SELECT ?1, ?2, ?1", 2);
    both("INSERT INTO t (x) VALUES (:x_1)", "INSERT INTO t (x) VALUES ($1)",
         "INSERT INTO t (x) VALUES (?1)", 1);
    both("WHERE a=:a AND b>:B", "WHERE a=$1 AND b>$2", "WHERE a=?1 AND b>?2", 2);
    both("SELECT 1", "SELECT 1", "SELECT 1", 0);
    both("", "", "", 0);
}

static void test_casts(void **state) {
    (void)state;
    both("SELECT x::int, :a::text, :b::timestamptz", "SELECT x::int, $1::text, $2::timestamptz",
         "SELECT x::int, ?1::text, ?2::timestamptz", 2);
    both("SELECT '{}'::jsonb", "SELECT '{}'::jsonb", "SELECT '{}'::jsonb", 0);
    both("SELECT arr[1:2], a:b", "SELECT arr[1:2], a:b", "SELECT arr[1:2], a:b", 0);
}

static void test_strings_and_identifiers(void **state) {
    (void)state;
    both("SELECT ':a', \":b\", :c", "SELECT ':a', \":b\", $1", "SELECT ':a', \":b\", ?1", 1);
    both("SELECT 'it''s :a', :b", "SELECT 'it''s :a', $1", "SELECT 'it''s :a', ?1", 1);
    both("SELECT E'it\\'s :a', :b", "SELECT E'it\\'s :a', $1", "SELECT E'it\\'s :a', ?1", 1);
    both("SELECT \"we\"\"ird :a\", ?", "SELECT \"we\"\"ird :a\", $1", "SELECT \"we\"\"ird :a\", ?1", 1);
    both("SELECT 'unterminated :a", "SELECT 'unterminated :a", "SELECT 'unterminated :a", 0);
    both("SELECT '?', ?", "SELECT '?', $1", "SELECT '?', ?1", 1);
}

static void test_comments(void **state) {
    (void)state;
    both("SELECT 1 -- :a ?\n, :b", "SELECT 1 -- :a ?\n, $1", "SELECT 1 -- :a ?\n, ?1", 1);
    both("SELECT /* :a /* nested :b */ :c */ :d", "SELECT /* :a /* nested :b */ :c */ $1",
         "SELECT /* :a /* nested :b */ :c */ ?1", 1);
    both("SELECT 1 /* unterminated :a", "SELECT 1 /* unterminated :a",
         "SELECT 1 /* unterminated :a", 0);
    both("SELECT 1 - -1, :a", "SELECT 1 - -1, $1", "SELECT 1 - -1, ?1", 1);
}

static void test_dollar_quotes(void **state) {
    (void)state;
    both("SELECT $$ :a ? $$, :b", "SELECT $$ :a ? $$, $1", "SELECT $$ :a ? $$, ?1", 1);
    both("DO $fn$ BEGIN x := :a; END $fn$; SELECT :b",
         "DO $fn$ BEGIN x := :a; END $fn$; SELECT $1", "DO $fn$ BEGIN x := :a; END $fn$; SELECT ?1",
         1);
    both("SELECT $a$ $b$ :x $b$ $a$", "SELECT $a$ $b$ :x $b$ $a$", "SELECT $a$ $b$ :x $b$ $a$", 0);
    both("SELECT foo$1, :a", "SELECT foo$1, $1", "SELECT foo$1, ?1", 1);
}

static void test_positional(void **state) {
    (void)state;
    both("SELECT ?, ?", "SELECT $1, $2", "SELECT ?1, ?2", 2);
    both("SELECT $1, $2, $1", "SELECT $1, $2, $1", "SELECT ?1, ?2, ?1", 2);
    both("SELECT ?2, ?1", "SELECT $2, $1", "SELECT ?2, ?1", 2);
    both("SELECT $3", "SELECT $3", "SELECT ?3", 3);
    /* "??" is a literal '?': PostgreSQL's jsonb key-exists operator. */
    both("SELECT data ?? 'k' FROM t WHERE id = ?", "SELECT data ? 'k' FROM t WHERE id = $1",
         "SELECT data ? 'k' FROM t WHERE id = ?1", 1);
    both("SELECT ?? 1", "SELECT ? 1", "SELECT ? 1", 0);

    /* Nothing to change on PostgreSQL: the caller's text is sent as is. */
    const char *sql = "SELECT $1";
    duet_sql t;
    assert_duet_ok(duet__sql_translate(sql, DUET_POSTGRESQL, &t));
    assert_ptr_equal(t.text, sql);
    assert_null(t.native);
    duet__sql_free(&t);
}

static void expect_error(const char *sql, const char *message) {
    duet_sql t;
    assert_int_equal(duet__sql_translate(sql, DUET_POSTGRESQL, &t), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), message);
    assert_null(t.slots);
}

static void test_mixed_styles(void **state) {
    (void)state;
    expect_error("SELECT :a, ?", "the SQL mixes :name and ? parameters: use one style per statement");
    expect_error("SELECT $1, :a", "the SQL mixes :name and $n parameters: use one style per statement");
    expect_error("SELECT ?, $1", "the SQL mixes ? and $n parameters: use one style per statement");
    expect_error("SELECT $0", "parameter numbers start at 1");
    expect_error("SELECT $99999", "parameter number out of range (at most 65535)");
}

/* Translates sql, binds p and returns the status (the message is in duet_errmsg). */
static duet_status bind(const char *sql, const duet_params *p, const duet_value **vals) {
    duet_sql t;
    duet_status st = duet__sql_translate(sql, DUET_SQLITE, &t);
    if (st == DUET_OK) st = duet__sql_bind(&t, p, vals);
    duet__sql_free(&t);
    return st;
}

static void test_bind_named(void **state) {
    (void)state;
    const duet_value *vals[4];
    duet_params *p = duet_params_new();
    assert_duet_ok(duet_bind_text(p, "b", "two"));
    assert_duet_ok(duet_bind_int64(p, ":a", 1)); /* the colon is optional */
    assert_duet_ok(duet_bind_text(p, "unused", "ignored"));
    assert_duet_ok(bind("SELECT :a, :b, :a", p, vals));
    assert_int_equal(vals[0]->type, DUET_V_INT);
    assert_int_equal(vals[0]->i, 1);
    assert_string_equal(vals[0]->data, "1");
    assert_string_equal(vals[1]->data, "two");

    assert_duet_ok(duet_bind_double(p, "a", 2.5)); /* rebinding replaces */
    assert_duet_ok(bind("SELECT :a", p, vals));
    assert_int_equal(vals[0]->type, DUET_V_DOUBLE);
    assert_string_equal(vals[0]->data, "2.5");

    assert_int_equal(bind("SELECT :a, :missing", p, vals), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "parameter :missing is not bound");
    assert_int_equal(bind("SELECT :x", NULL, vals), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "parameter :x is not bound");
    assert_int_equal(bind("SELECT ?", p, vals), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "the SQL uses positional parameters but :b is bound by name");

    assert_int_equal(duet_bind_text(p, "bad-name", "x"), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "invalid parameter name \"bad-name\"");
    assert_int_equal(duet_bind_text(p, "", "x"), DUET_ERR_MISUSE);
    assert_int_equal(duet_bind_text(NULL, "a", "x"), DUET_ERR_MISUSE);
    duet_params_free(p);
}

static void test_bind_positional(void **state) {
    (void)state;
    const duet_value *vals[4];
    duet_params *p = duet_params_new();
    assert_duet_ok(duet_bind_text(p, NULL, "one"));
    assert_duet_ok(duet_bind_bool(p, NULL, true));
    assert_duet_ok(bind("SELECT ?, ?", p, vals));
    assert_string_equal(vals[0]->data, "one");
    assert_int_equal(vals[1]->type, DUET_V_BOOL);
    assert_string_equal(vals[1]->data, "true");
    assert_duet_ok(bind("SELECT $2, $1", p, vals)); /* slot k is $k+1, wherever it appears */
    assert_string_equal(vals[0]->data, "one");
    assert_string_equal(vals[1]->data, "true");

    assert_int_equal(bind("SELECT ?, ?, ?", p, vals), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "too few positional values: the SQL has 3 '?' but 2 are bound");
    assert_int_equal(bind("SELECT $3", p, vals), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "parameter $3 is not bound: only 2 positional values are bound");
    assert_int_equal(bind("SELECT ?", p, vals), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "too many positional values: 2 bound but the SQL uses 1");
    assert_int_equal(bind("SELECT 1", p, vals), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(),
                        "too many positional values: 2 bound but the SQL has no placeholder");
    assert_int_equal(bind("SELECT :a", p, vals), DUET_ERR_MISUSE);
    assert_string_equal(duet_errmsg(), "the SQL uses :name parameters but 2 values are bound by position");

    duet_params_clear(p);
    assert_duet_ok(bind("SELECT 1", p, vals));
    assert_duet_ok(duet_bind_null(p, NULL));
    assert_duet_ok(duet_bind_bytes(p, NULL, "\0\1", 2));
    assert_duet_ok(bind("SELECT ?, ?", p, vals));
    assert_int_equal(vals[0]->type, DUET_V_NULL);
    assert_int_equal(vals[1]->type, DUET_V_BYTES);
    assert_int_equal(vals[1]->len, 2);
    assert_int_equal(duet_bind_bytes(p, NULL, NULL, 3), DUET_ERR_MISUSE);
    duet_params_free(p);
}

static void test_double_text(void **state) {
    (void)state;
    const duet_value *vals[3];
    duet_params *p = duet_params_new();
    assert_duet_ok(duet_bind_double(p, NULL, 0.1));
    assert_duet_ok(duet_bind_double(p, NULL, 1.0 / 0.0));
    assert_duet_ok(duet_bind_int64(p, NULL, INT64_MIN));
    assert_duet_ok(bind("SELECT ?, ?, ?", p, vals));
    assert_float_equal(strtod(vals[0]->data, NULL), 0.1, 0);
    assert_string_equal(vals[1]->data, "Infinity");
    assert_string_equal(vals[2]->data, "-9223372036854775808");
    duet_params_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_named),
        cmocka_unit_test(test_casts),
        cmocka_unit_test(test_strings_and_identifiers),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_dollar_quotes),
        cmocka_unit_test(test_positional),
        cmocka_unit_test(test_mixed_styles),
        cmocka_unit_test(test_bind_named),
        cmocka_unit_test(test_bind_positional),
        cmocka_unit_test(test_double_text),
    };
    return cmocka_run_group_tests_name("params", tests, NULL, NULL);
}
