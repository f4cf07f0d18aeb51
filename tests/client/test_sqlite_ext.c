/*
 * test_sqlite_ext.c — the duet SQLite extension (sqlite_ext/duet.so) loaded
 * through sqlite3_load_extension(), checked from a second connection to the
 * same file: test sessions (also across close and a crash), transaction age
 * and timeout, upsert, get_or_create and the statement cache at close.
 *
 * Needs DUET_SQLITE_EXT (tests/run-suites.sh exports it); uses only sqlite3
 * and cmocka, not libduet.
 */
#include <errno.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "testutil.h"

static char dir[64];
static char path[128];

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        continue;
}

/* A connection to path (or :memory:) with the extension loaded. */
static sqlite3* open_duet(const char* file) {
    const char* ext = getenv("DUET_SQLITE_EXT");
    if (ext == NULL || *ext == '\0')
        fail_msg("DUET_SQLITE_EXT is not set: run through tests/run-suites.sh");
    sqlite3* db = NULL;
    assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
    assert_int_equal(sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, NULL),
                     SQLITE_OK);
    char* err = NULL;
    if (sqlite3_load_extension(db, ext, NULL, &err) != SQLITE_OK)
        fail_msg("load %s: %s", ext, err);
    return db;
}

/* A plain connection, without the extension: what another program sees. */
static sqlite3* open_plain(void) {
    sqlite3* db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    return db;
}

static void exec_ok(sqlite3* db, const char* sql) {
    char* err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", sql, err);
}

/* Runs sql and returns its error message, "" when it succeeds (static). */
static const char* exec_err(sqlite3* db, const char* sql) {
    static char msg[512];
    char* err = NULL;
    msg[0] = '\0';
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        snprintf(msg, sizeof(msg), "%s", err ? err : "?");
    sqlite3_free(err);
    return msg;
}

static sqlite3_int64 int_of(sqlite3* db, const char* sql) {
    sqlite3_stmt* s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(s) != SQLITE_ROW)
        fail_msg("%s: no row: %s", sql, sqlite3_errmsg(db));
    sqlite3_int64 v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Text of the first column of the first row, copied into a static buffer. */
static const char* text_of(sqlite3* db, const char* sql) {
    static char buf[1024];
    sqlite3_stmt* s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    if (sqlite3_step(s) != SQLITE_ROW)
        fail_msg("%s: no row: %s", sql, sqlite3_errmsg(db));
    const unsigned char* t = sqlite3_column_text(s, 0);
    snprintf(buf, sizeof(buf), "%s", t ? (const char*)t : "(null)");
    sqlite3_finalize(s);
    return buf;
}

static void assert_close(sqlite3* db) {
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* A fresh database file with one table of three rows. */
static int setup(void** state) {
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/duet_sqext.XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/test.db", dir);
    sqlite3* db = open_plain();
    exec_ok(db,
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
            "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');");
    assert_close(db);
    return 0;
}

static int teardown(void** state) {
    (void)state;
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The state a test session must always come back to. */
static void assert_pristine(sqlite3* db) {
    assert_int_equal(int_of(db, "SELECT count(*) FROM t"), 3);
    assert_string_equal(
        text_of(db, "SELECT group_concat(v, '') FROM (SELECT v FROM t ORDER BY id)"), "abc");
    assert_int_equal(int_of(db, "SELECT count(*) FROM sqlite_schema"), 1);
}

/* Changes of every kind: autocommit, the program's COMMIT, DDL. */
static void change_everything(sqlite3* db) {
    exec_ok(db, "INSERT INTO t VALUES (4, 'd')");
    exec_ok(db, "BEGIN; UPDATE t SET v = 'x'; COMMIT");
    exec_ok(db, "CREATE TABLE extra(y); INSERT INTO extra VALUES (1)");
    exec_ok(db, "BEGIN; DELETE FROM t WHERE id = 1; ROLLBACK");
    exec_ok(db, "DELETE FROM t WHERE id = 2");
}

static void test_session_seen_from_second_connection(void** state) {
    (void)state;
    sqlite3 *a = open_duet(path), *b = open_plain();
    exec_ok(a, "SELECT duet_test_begin()");
    change_everything(a);
    /* The session sees its own work, COMMITs included... */
    assert_int_equal(int_of(a, "SELECT count(*) FROM t"), 3);
    assert_string_equal(text_of(a, "SELECT v FROM t WHERE id = 1"), "x");
    /* ...another connection sees none of it, even after those COMMITs. */
    assert_pristine(b);
    exec_ok(a, "SELECT duet_test_end()");
    assert_pristine(a);
    assert_pristine(b);
    assert_close(a);
    assert_close(b);
}

static void test_session_close_discards(void** state) {
    (void)state;
    sqlite3* a = open_duet(path);
    exec_ok(a, "SELECT duet_test_begin()");
    change_everything(a);
    exec_ok(a, "SELECT duet_upsert('t', '{\"id\": 9, \"v\": \"z\"}')"); /* caches statements */
    assert_close(a); /* during the session: no duet_test_end() */
    sqlite3* b = open_plain();
    assert_pristine(b);
    assert_close(b);
    /* A new session on the same file starts from the same state. */
    a = open_duet(path);
    assert_pristine(a);
    exec_ok(a, "SELECT duet_test_begin()");
    exec_ok(a, "DROP TABLE t");
    exec_ok(a, "SELECT duet_test_end()");
    assert_pristine(a);
    assert_close(a);
}

/* sqlite3_close_v2() with a statement of the program's still open: the
 * connection lives on as a zombie until it is finalized, the session's
 * changes unseen, then closes, rolled back, its locks and memory released. */
static void test_session_close_v2_zombie(void** state) {
    (void)state;
    sqlite3 *a = open_duet(path), *b = open_plain();
    exec_ok(a, "SELECT duet_test_begin()");
    change_everything(a);
    exec_ok(a, "SELECT duet_upsert('t', '{\"id\": 9, \"v\": \"z\"}')");
    sqlite3_stmt* open_stmt;
    assert_int_equal(sqlite3_prepare_v2(a, "SELECT v FROM t", -1, &open_stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(open_stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_close_v2(a), SQLITE_OK);
    assert_pristine(b);
    sqlite3_finalize(open_stmt); /* the zombie closes now */
    exec_ok(b, "INSERT INTO t VALUES (4, 'd'); DELETE FROM t WHERE id = 4");
    assert_pristine(b);
    assert_close(b);
}

/* A process that dies in a session, with more changes than its page cache
 * holds (which would spill them to the file outside a session): the next
 * opener finds the database as it was. */
static void crash_in_session(const char* journal_mode, const char* in_session) {
    sqlite3* setup_db = open_plain();
    char sql[100];
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode = %s", journal_mode);
    sqlite3_stmt* s;
    assert_int_equal(sqlite3_prepare_v2(setup_db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    sqlite3_finalize(s);
    assert_close(setup_db);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3* a = open_duet(path);
        sqlite3_exec(a, "PRAGMA cache_size = 2; SELECT duet_test_begin();", NULL, NULL, NULL);
        sqlite3_exec(a, in_session, NULL, NULL, NULL);
        sqlite3_exec(
            a,
            "WITH RECURSIVE s(i) AS (SELECT 10 UNION ALL SELECT i + 1 FROM s WHERE i < 3000)"
            "  INSERT INTO t SELECT i, printf('%0500d', i) FROM s;"
            "BEGIN; UPDATE t SET v = 'x'; COMMIT;",
            NULL, NULL, NULL);
        _exit(0); /* no close, no test_end: a crash */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    sqlite3* b = open_plain();
    assert_pristine(b);
    assert_string_equal(text_of(b, "PRAGMA integrity_check"), "ok");
    assert_close(b);
}

static void test_session_crash_rollback_journal(void** state) {
    (void)state;
    crash_in_session("DELETE", "");
}

static void test_session_crash_wal(void** state) {
    (void)state;
    crash_in_session("WAL", "");
}

/* The program turning cache spilling back on during a session would let
 * changed pages reach the file (with the journal in memory); SQLite applies
 * that pragma to the pager only outside a transaction, so it cannot. */
static void test_session_crash_cache_spill_on(void** state) {
    (void)state;
    crash_in_session("DELETE", "PRAGMA cache_spill = ON; PRAGMA main.cache_spill = 1");
}

/* A statement whose text starts with a comment is still the program's own
 * BEGIN (SQLite traces "-- ..." for triggers and nested statements only). */
static void test_session_commented_begin(void** state) {
    (void)state;
    sqlite3 *a = open_duet(path), *b = open_plain();
    exec_ok(a, "SELECT duet_test_begin()");
    exec_ok(a, "-- the program's comment\nBEGIN");
    assert_string_equal(text_of(a, "SELECT duet_test_session()"), "{\"active\":true,\"depth\":1}");
    exec_ok(a, "INSERT INTO t VALUES (4, 'd')");
    exec_ok(a, "-- and another\nROLLBACK");
    assert_int_equal(int_of(a, "SELECT count(*) FROM t"), 3); /* undone by that ROLLBACK */
    exec_ok(a, "/* c */ BEGIN; INSERT INTO t VALUES (5, 'e'); -- c\nCOMMIT");
    assert_int_equal(int_of(a, "SELECT count(*) FROM t"), 4);
    assert_string_equal(text_of(a, "SELECT duet_test_session()"), "{\"active\":true,\"depth\":0}");
    exec_ok(a, "SELECT duet_test_end()");
    assert_pristine(a);
    assert_pristine(b);
    /* The transaction age counts from that BEGIN, not from the statement before. */
    exec_ok(a, "SELECT 1");
    sleep_ms(300);
    exec_ok(a, "-- the program's comment\nBEGIN");
    assert_int_equal(int_of(a, "SELECT duet_txn_age() < 0.25"), 1);
    exec_ok(a, "COMMIT");
    assert_close(a);
    assert_close(b);
}

/* Another connection writing during a session (WAL): its work is kept,
 * the session's is not; after the session's first read, a commit by the
 * other makes the session's next write fail (one snapshot, as in any SQLite
 * transaction) without harming the session. */
static void test_session_other_writer_wal(void** state) {
    (void)state;
    sqlite3* a = open_duet(path);
    assert_string_equal(text_of(a, "PRAGMA journal_mode = WAL"), "wal");
    sqlite3* b = open_plain();
    exec_ok(a, "SELECT duet_test_begin()");
    exec_ok(b, "INSERT INTO t VALUES (4, 'd')"); /* before the session reads */
    assert_int_equal(int_of(a, "SELECT count(*) FROM t"), 4);
    exec_ok(a, "INSERT INTO t VALUES (5, 'e')");
    exec_ok(a, "DELETE FROM t WHERE id = 5");
    exec_ok(a, "SELECT duet_test_end()");
    exec_ok(a, "SELECT duet_test_begin()");
    exec_ok(a, "DELETE FROM t WHERE id = 1");
    exec_ok(a, "SELECT duet_test_end()");
    exec_ok(a, "SELECT duet_test_begin()");
    assert_int_equal(int_of(a, "SELECT count(*) FROM t"), 4);
    exec_ok(b, "INSERT INTO t VALUES (6, 'f')"); /* after it read */
    assert_int_equal(sqlite3_exec(a, "INSERT INTO t VALUES (7, 'g')", NULL, NULL, NULL), SQLITE_BUSY);
    assert_int_equal(sqlite3_extended_errcode(a), SQLITE_BUSY_SNAPSHOT);
    assert_string_equal(text_of(a, "SELECT duet_test_session()"), "{\"active\":true,\"depth\":0}");
    exec_ok(a, "SELECT duet_test_end()");
    assert_int_equal(int_of(b, "SELECT count(*) FROM t"), 5);
    assert_int_equal(int_of(a, "SELECT count(*) FROM t WHERE id IN (1, 4, 6)"), 3);
    exec_ok(b, "DELETE FROM t WHERE id IN (4, 6)");
    assert_pristine(a);
    assert_close(b);
    assert_close(a);
}

static void test_session_memory(void** state) {
    (void)state;
    sqlite3* a = open_duet(":memory:");
    exec_ok(a, "CREATE TABLE m(x); INSERT INTO m VALUES (1)");
    exec_ok(a, "SELECT duet_test_begin()");
    exec_ok(a, "INSERT INTO m VALUES (2); BEGIN; INSERT INTO m VALUES (3); COMMIT; DROP TABLE m");
    exec_ok(a, "SELECT duet_test_end()");
    assert_int_equal(int_of(a, "SELECT count(*) FROM m"), 1);
    assert_close(a);
}

static void test_session_errors(void** state) {
    (void)state;
    sqlite3* a = open_duet(path);
    assert_string_equal(exec_err(a, "SELECT duet_test_end()"),
                        "duet_test_end: no test session is active");
    exec_ok(a, "BEGIN; INSERT INTO t VALUES (5, 'e')");
    assert_string_equal(exec_err(a, "SELECT duet_test_begin()"),
                        "duet_test_begin: cannot start a test session inside a transaction block");
    exec_ok(a, "COMMIT"); /* nothing lost: the program's transaction goes on */
    assert_int_equal(int_of(a, "SELECT count(*) FROM t"), 4);
    exec_ok(a, "DELETE FROM t WHERE id = 5");
    exec_ok(a, "SELECT duet_test_begin()");
    exec_ok(a, "INSERT INTO t VALUES (6, 'f')");
    assert_string_equal(exec_err(a, "SELECT duet_test_begin()"),
                        "duet_test_begin: a test session is already active");
    assert_int_equal(int_of(a, "SELECT count(*) FROM t"), 4); /* still in the session */
    exec_ok(a, "SELECT duet_test_end()");
    assert_pristine(a);
    assert_close(a);
}

/* Statements prepared before, during and after a session follow its rules
 * when they run, as SQLite re-prepares them when the authorizer changes. */
static void test_session_prepared_statements(void** state) {
    (void)state;
    sqlite3 *a = open_duet(path), *b = open_plain();
    sqlite3_stmt *begin, *commit;
    assert_int_equal(sqlite3_prepare_v2(a, "BEGIN", -1, &begin, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(a, "COMMIT", -1, &commit, NULL), SQLITE_OK);
    exec_ok(a, "SELECT duet_test_begin()");
    assert_int_equal(sqlite3_step(begin), SQLITE_DONE);
    sqlite3_reset(begin);
    exec_ok(a, "INSERT INTO t VALUES (7, 'g')");
    assert_int_equal(sqlite3_step(commit), SQLITE_DONE);
    sqlite3_reset(commit);
    assert_string_equal(text_of(a, "SELECT duet_test_session()"), "{\"active\":true,\"depth\":0}");
    exec_ok(a, "SELECT duet_test_end()");
    /* After the session the same statements are real again. */
    assert_int_equal(sqlite3_step(begin), SQLITE_DONE);
    exec_ok(a, "INSERT INTO t VALUES (8, 'h')");
    assert_int_equal(sqlite3_step(commit), SQLITE_DONE);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    assert_int_equal(int_of(b, "SELECT count(*) FROM t WHERE id = 8"), 1);
    assert_int_equal(int_of(b, "SELECT count(*) FROM t WHERE id = 7"), 0);
    exec_ok(a, "DELETE FROM t WHERE id = 8");
    assert_close(a);
    assert_close(b);
}

static void test_txn_age_and_timeout(void** state) {
    (void)state;
    sqlite3* a = open_duet(path);
    assert_string_equal(text_of(a, "SELECT duet_txn_age()"), "(null)");
    exec_ok(a, "BEGIN");
    sleep_ms(60);
    assert_int_equal(int_of(a, "SELECT duet_txn_age() >= 0.05"), 1);
    exec_ok(a, "COMMIT");
    assert_int_equal(int_of(a, "SELECT duet_txn_age() IS NULL"), 1);
    /* An expired transaction: the next statement is interrupted, rolled back. */
    exec_ok(a, "SELECT duet_txn_timeout(0.1)");
    exec_ok(a, "BEGIN; INSERT INTO t VALUES (10, 'j')");
    sleep_ms(150);
    assert_int_equal(sqlite3_exec(a, "INSERT INTO t VALUES (11, 'k')", NULL, NULL, NULL),
                     SQLITE_INTERRUPT);
    assert_int_equal(sqlite3_get_autocommit(a), 1);
    assert_string_equal(text_of(a, "SELECT duet_txn_timeout_error()"),
                        "duet_txn_timeout: transaction older than 0.1 s");
    exec_ok(a, "SELECT duet_txn_timeout(0)");
    assert_pristine(a);
    assert_close(a);
}

static int count_progress(void* arg) {
    ++*(int*)arg;
    return 0;
}

/* duet takes the progress handler only while a limit is set: turning the
 * limit off, or never setting one, leaves the program's own alone.  A
 * program that installs its own handler over duet's loses the interruption
 * of running statements, but never gets part of an expired transaction
 * committed. */
static void test_txn_timeout_and_own_progress_handler(void** state) {
    (void)state;
    sqlite3* a = open_duet(path);
    int calls = 0;
    sqlite3_progress_handler(a, 1, count_progress, &calls);
    exec_ok(a, "SELECT duet_txn_timeout(0)");
    calls = 0;
    assert_int_equal(int_of(a, "SELECT count(*) FROM t"), 3);
    assert_true(calls > 0);
    /* A limit replaces it (documented); the program takes it back. */
    exec_ok(a, "SELECT duet_txn_timeout(0.1)");
    sqlite3_progress_handler(a, 1, count_progress, &calls);
    exec_ok(a, "BEGIN; INSERT INTO t VALUES (10, 'j')");
    sleep_ms(150);
    /* Not interrupted without duet's handler, and not committed either... */
    sqlite3_exec(a, "INSERT INTO t VALUES (11, 'k')", NULL, NULL, NULL);
    /* ...nor anything else the program does before it learns of the timeout. */
    sqlite3_exec(a, "SAVEPOINT s; INSERT INTO t VALUES (12, 'l'); RELEASE s", NULL, NULL, NULL);
    assert_string_equal(exec_err(a, "COMMIT"), "cannot commit - no transaction is active");
    assert_string_equal(text_of(a, "SELECT duet_txn_timeout_error()"),
                        "duet_txn_timeout: transaction older than 0.1 s");
    assert_int_equal(sqlite3_get_autocommit(a), 1);
    exec_ok(a, "SELECT duet_txn_timeout(0)");
    assert_pristine(a);
    sqlite3* b = open_plain();
    assert_pristine(b);
    assert_close(b);
    assert_close(a);
}

static int deny_select(void* arg, int op, const char* a, const char* b, const char* c,
                       const char* d) {
    (void)arg, (void)a, (void)b, (void)c, (void)d;
    return op == SQLITE_SELECT ? SQLITE_DENY : SQLITE_OK;
}

/* Loading the extension again keeps the connection's state even when duet
 * cannot tell it is loaded (an authorizer refuses its probe): replacing it
 * would free the state that the hooks still point to. */
static void test_load_twice(void** state) {
    (void)state;
    sqlite3* a = open_duet(path);
    exec_ok(a, "SELECT duet_txn_timeout(30)");
    char* err = NULL;
    assert_int_equal(sqlite3_load_extension(a, getenv("DUET_SQLITE_EXT"), NULL, &err), SQLITE_OK);
    sqlite3_set_authorizer(a, deny_select, NULL);
    assert_int_not_equal(sqlite3_load_extension(a, getenv("DUET_SQLITE_EXT"), NULL, &err),
                         SQLITE_OK);
    sqlite3_free(err);
    sqlite3_set_authorizer(a, NULL, NULL);
    assert_int_equal(int_of(a, "SELECT duet_txn_timeout()"), 30);
    exec_ok(a, "SELECT duet_txn_timeout(0)");
    assert_pristine(a);
    assert_close(a);
}

static void test_upsert_and_get_or_create(void** state) {
    (void)state;
    sqlite3 *a = open_duet(path), *b = open_duet(path);
    sqlite3_busy_timeout(a, 2000);
    sqlite3_busy_timeout(b, 2000);
    sqlite3_stmt* s;
    assert_int_equal(sqlite3_prepare_v2(a, "SELECT duet_upsert('t', ?1)", -1, &s, NULL), SQLITE_OK);
    sqlite3_bind_text(s, 1, "{\"id\": 20, \"v\": \"it's bound\"}", -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char*)sqlite3_column_text(s, 0),
                        "{\"row\":{\"id\":20,\"v\":\"it's bound\"},\"inserted\":true}");
    /* Bound with a length that ends before the buffer's NUL: only those
    ** bytes are the row (duet copies them to read them). */
    static const char cut[] = "{\"id\": 23, \"v\": \"cut\"}, \"not\": \"the row\"}";
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, cut, (int)(strchr(cut, '}') - cut) + 1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char*)sqlite3_column_text(s, 0),
                        "{\"row\":{\"id\":23,\"v\":\"cut\"},\"inserted\":true}");
    /* UTF-16 text is read as the UTF-8 SQLite makes of it. */
    sqlite3_reset(s);
    sqlite3_bind_text16(s, 1, u"{\"id\": 24, \"v\": \"\u00e9\"}", -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char*)sqlite3_column_text(s, 0),
                        "{\"row\":{\"id\":24,\"v\":\"\xc3\xa9\"},\"inserted\":true}");
    sqlite3_finalize(s);
    exec_ok(a, "DELETE FROM t WHERE id IN (23, 24)");
    /* The other connection finds the row rather than creating it. */
    exec_ok(a, "CREATE UNIQUE INDEX t_v ON t(v)");
    assert_string_equal(text_of(b, "SELECT duet_get_or_create('t', '{\"v\": \"new\"}')"),
                        "{\"row\":{\"id\":21,\"v\":\"new\"},\"created\":true}");
    assert_string_equal(text_of(a, "SELECT duet_get_or_create('t', '{\"v\": \"new\"}')"),
                        "{\"row\":{\"id\":21,\"v\":\"new\"},\"created\":false}");
    /* Errors carry SQLite's code: a constraint stays a constraint. */
    assert_int_equal(sqlite3_exec(a, "SELECT duet_upsert('t', '{\"id\": 22, \"v\": \"new\"}')",
                                  NULL, NULL, NULL),
                     SQLITE_CONSTRAINT);
    assert_int_equal(sqlite3_extended_errcode(a), SQLITE_CONSTRAINT_UNIQUE);
    exec_ok(a, "DELETE FROM t WHERE id >= 20; DROP INDEX t_v");
    /* Cached statements are finalized as the connection closes. */
    assert_close(a);
    assert_close(b);
    sqlite3* c = open_plain();
    assert_pristine(c);
    assert_close(c);
}

/* Creates keys 0..n-1 with get_or_create; returns how many it created, or
 * -1 on an error. */
static int create_keys(int n) {
    sqlite3* db = open_duet(path);
    sqlite3_busy_timeout(db, 10000);
    int created = 0;
    for (int i = 0; i < n; i++) {
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "SELECT duet_get_or_create('t', '{\"v\": \"key %d\"}') ->> 'created'", i);
        sqlite3_stmt* s;
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK ||
            sqlite3_step(s) != SQLITE_ROW) {
            fprintf(stderr, "create_keys: %s\n", sqlite3_errmsg(db));
            sqlite3_finalize(s);
            sqlite3_close(db);
            return -1;
        }
        created += sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return created;
}

/* Two processes race on the same keys: each key is created exactly once
 * and nobody gets an error (both journal modes). */
static void race_get_or_create(const char* journal_mode) {
    sqlite3* db = open_plain();
    char sql[100];
    snprintf(sql, sizeof(sql), "PRAGMA journal_mode = %s", journal_mode);
    assert_string_not_equal(text_of(db, sql), "");
    exec_ok(db, "CREATE UNIQUE INDEX t_v ON t(v)");
    assert_close(db);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int n = create_keys(200);
        if (write(fds[1], &n, sizeof(n)) != sizeof(n))
            _exit(1);
        _exit(0);
    }
    int mine = create_keys(200), theirs = -1;
    assert_int_equal(read(fds[0], &theirs, sizeof(theirs)), sizeof(theirs));
    waitpid(pid, NULL, 0);
    close(fds[0]);
    close(fds[1]);
    assert_true(mine >= 0 && theirs >= 0);
    assert_int_equal(mine + theirs, 200);
    db = open_plain();
    assert_int_equal(int_of(db, "SELECT count(*) FROM t WHERE v LIKE 'key %'"), 200);
    assert_close(db);
}

static void test_get_or_create_race_rollback_journal(void** state) {
    (void)state;
    race_get_or_create("DELETE");
}

static void test_get_or_create_race_wal(void** state) {
    (void)state;
    race_get_or_create("WAL");
}

static void test_plan(void** state) {
    (void)state;
    sqlite3* a = open_duet(path);
    assert_string_equal(text_of(a, "SELECT detail FROM duet_plan('SELECT * FROM t WHERE v = 1')"),
                        "SCAN t");
    assert_string_equal(
        text_of(a, "SELECT suggestion FROM duet_plan_advice('SELECT * FROM t WHERE v = 1')"),
        "CREATE INDEX t_v ON t(v);");
    /* The suggestion is SQL that runs, and makes the advice go away. */
    exec_ok(a, "CREATE TABLE \"Odd T\"(\"select\", \"a b\")");
    const char* q =
        "SELECT suggestion FROM duet_plan_advice("
        "'SELECT * FROM \"Odd T\" WHERE \"select\" = 1 AND \"a b\" > 2')";
    char suggestion[256];
    snprintf(suggestion, sizeof(suggestion), "%s", text_of(a, q));
    assert_string_equal(suggestion,
                        "CREATE INDEX Odd_T_select_a_b ON \"Odd T\"(\"select\", \"a b\");");
    exec_ok(a, suggestion);
    assert_int_equal(int_of(a,
                            "SELECT count(*) FROM duet_plan_advice("
                            "'SELECT * FROM \"Odd T\" WHERE \"select\" = 1 AND \"a b\" > 2')"),
                     0);
    exec_ok(a, "DROP TABLE \"Odd T\"");
    assert_string_equal(exec_err(a, "SELECT * FROM duet_plan('SELEC 1')"),
                        "duet_plan: near \"SELEC\": syntax error");
    /* Nothing is run: a PRAGMA acts as it is prepared, so it is refused
     * (from a view it could turn trusted_schema back on). */
    assert_int_equal(int_of(a, "PRAGMA foreign_keys"), 0);
    assert_string_equal(
        exec_err(a, "SELECT * FROM duet_plan('/* x */ pragma foreign_keys = ON')"),
        "duet_plan: a PRAGMA statement has no query plan");
    assert_string_equal(exec_err(a, "SELECT * FROM duet_plan_advice('PRAGMA foreign_keys = ON')"),
                        "duet_plan_advice: a PRAGMA statement has no query plan");
    assert_int_equal(int_of(a, "PRAGMA foreign_keys"), 0);
    assert_close(a);
}

/* duet_plan_advice copies the schema into a private database: a schema
 * entry carrying more than one statement (a crafted file) runs only its
 * CREATE, so it cannot ATTACH and write another file. */
static void test_plan_advice_crafted_schema(void** state) {
    (void)state;
    char other[200], sql[400];
    snprintf(other, sizeof(other), "%s/other.db", dir);
    sqlite3* db = open_plain();
    exec_ok(db, "PRAGMA writable_schema = ON");
    snprintf(sql, sizeof(sql),
             "UPDATE sqlite_schema SET sql = 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); "
             "ATTACH ''%s'' AS o; CREATE TABLE o.x(y)' WHERE name = 't'",
             other);
    exec_ok(db, sql);
    assert_close(db);
    sqlite3* a = open_duet(path);
    assert_string_equal(
        text_of(a, "SELECT suggestion FROM duet_plan_advice('SELECT * FROM t WHERE v = 1')"),
        "CREATE INDEX t_v ON t(v);");
    assert_close(a);
    assert_int_equal(access(other, F_OK), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_session_seen_from_second_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_close_discards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_close_v2_zombie, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_crash_rollback_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_crash_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_crash_cache_spill_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_commented_begin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_other_writer_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_prepared_statements, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_age_and_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_timeout_and_own_progress_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upsert_and_get_or_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_or_create_race_rollback_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_or_create_race_wal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_advice_crafted_schema, setup, teardown),
    };
    return cmocka_run_group_tests_name("sqlite_ext", tests, NULL, NULL);
}
