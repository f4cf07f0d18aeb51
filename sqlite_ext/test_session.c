/*
** test_session.c: force-rollback test sessions.
**
**     SELECT duet_test_begin();
**     CREATE TABLE scratch(x);               -- DDL
**     INSERT INTO users(name) VALUES ('a');  -- autocommit
**     BEGIN; UPDATE users SET name = 'b'; COMMIT;
**     BEGIN; DELETE FROM users; ROLLBACK;    -- undoes only the DELETE
**     SELECT duet_test_end();                -- all of the above is gone
**     SELECT duet_test_session();            -- {"active":false,"depth":0}
**
** Between the two calls nothing the connection does survives, its own
** COMMITs and DDL included; closing the connection (or a crash) during a
** session leaves the database as it was before duet_test_begin().
**
** Mechanism: one real transaction.  duet_test_begin() runs BEGIN; the
** program's transaction statements are then made no-ops by an authorizer
** (SQLITE_TRANSACTION -> SQLITE_IGNORE) and replayed by the statement trace
** as a savepoint: BEGIN -> SAVEPOINT duet_test_txn, COMMIT/END -> RELEASE,
** ROLLBACK -> ROLLBACK TO + RELEASE.  The program's own SAVEPOINT, RELEASE
** and ROLLBACK TO run natively inside it.  duet_test_end() runs ROLLBACK.
** Because the session is one uncommitted transaction, SQLite itself keeps
** the state from before it: closing the connection rolls it back.  The
** session also turns PRAGMA cache_spill off and a rollback journal to
** MEMORY (both restored at the end), so changed pages stay in memory and
** nothing reaches the database file (nor a WAL) before duet_test_end():
** a crash leaves the file as it was, duet_test_end() only drops pages, and
** in rollback-journal mode the session never needs the EXCLUSIVE lock of a
** spill, so other connections keep reading.  Cost: memory for the pages
** changed, and a ROLLBACK whose time does not depend on the database size
** (a snapshot by the backup or serialize API copies the whole file at begin
** and at end; see README.md for the figures).  A commit hook refuses any
** commit while a session is active, so even without the trace nothing can
** be committed.
**
** Consequences, as with PostgreSQL's test sessions: other connections see
** none of the session's changes, and its first write takes the database's
** write lock until duet_test_end(); the session reads one snapshot, so in
** WAL mode a commit by another connection after its first read makes its
** next write fail with SQLITE_BUSY_SNAPSHOT; sqlite3_get_autocommit() is 0 during
** the session; COMMIT or ROLLBACK without BEGIN is a no-op (not an error);
** statements that cannot run in a transaction (VACUUM, changing to or from
** WAL) fail; PRAGMA foreign_keys cannot be changed; PRAGMA journal_mode
** reads "memory"; the pages the session changes must fit in memory.  A conflict
** resolution of ROLLBACK (INSERT OR ROLLBACK, RAISE(ROLLBACK)) or an
** interrupted write loses the session's work so far; the session goes on
** with a new transaction.  duet owns the authorizer and the commit hook
** during a session and clears them at the end (SQLite cannot tell it the
** program's own, to put back).
**
** duet_test_session() returns {"active": bool, "depth": 0 or 1}, depth being
** 1 inside the program's own BEGIN.
**
** Errors: "duet_test_begin: a test session is already active",
** "duet_test_begin: cannot start a test session inside a transaction block",
** "duet_test_end: no test session is active".
*/
#include <stddef.h>
#include <string.h>

#include "duet_ext.h"
SQLITE_EXTENSION_INIT3

/* Compile time: the program's BEGIN/COMMIT/ROLLBACK become no-ops, which the
** trace replays as savepoints.  A BEGIN inside the program's transaction is
** compiled as is, so that it fails exactly as without a session. */
static int session_auth(void* ctx,
                        int op,
                        const char* a,
                        const char* b,
                        const char* d,
                        const char* t) {
    DuetConn* c = ctx;
    (void)b, (void)d, (void)t;
    if (c->internal || op != SQLITE_TRANSACTION)
        return SQLITE_OK;
    if (c->progTxn && a && strcmp(a, "BEGIN") == 0)
        return SQLITE_OK;
    return SQLITE_IGNORE;
}

static int allow_all(void* ctx,
                     int op,
                     const char* a,
                     const char* b,
                     const char* d,
                     const char* t) {
    (void)ctx, (void)op, (void)a, (void)b, (void)d, (void)t;
    return SQLITE_OK;
}

/* Last line of defence: nothing commits during a session. */
static int session_commit_hook(void* ctx) {
    DuetConn* c = ctx;
    return c->session;
}

/* Run time, at each statement start (from conn.c's trace callback). */
void duet_test_session_on_stmt(DuetConn* c, int verb) {
    if (!c->session)
        return;
    if (sqlite3_get_autocommit(c->db)) {
        /* An INSERT OR ROLLBACK or an interrupted write ended the session's
        ** transaction: open a new one before this statement runs. */
        c->progTxn = 0;
        duet_conn_exec(c, "BEGIN", NULL);
    }
    if (verb == DUET_VERB_BEGIN && !c->progTxn) {
        if (duet_conn_exec(c, "SAVEPOINT duet_test_txn", NULL) == SQLITE_OK)
            c->progTxn = 1;
    } else if (verb == DUET_VERB_COMMIT && c->progTxn) {
        c->progTxn = 0;
        duet_conn_exec(c, "RELEASE duet_test_txn", NULL);
    } else if (verb == DUET_VERB_ROLLBACK) {
        duet_conn_rollback(c);
    }
}

/* PRAGMA cache_spill: the spill threshold in pages, 0 when spilling is off. */
static int cache_spill(DuetConn* c) {
    sqlite3_stmt* s;
    int n = 1;
    c->internal++;
    if (sqlite3_prepare_v2(c->db, "PRAGMA cache_spill", -1, &s, NULL) == SQLITE_OK) {
        if (sqlite3_step(s) == SQLITE_ROW)
            n = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    c->internal--;
    return n;
}

/* A rollback journal (delete, truncate, persist) of the main database goes
** to memory for the session; WAL and in-memory databases stay as they are. */
static void journal_to_memory(DuetConn* c) {
    sqlite3_stmt* s;
    c->journalWas[0] = '\0';
    c->internal++;
    if (sqlite3_prepare_v2(c->db, "PRAGMA main.journal_mode", -1, &s, NULL) == SQLITE_OK) {
        const char* mode =
            sqlite3_step(s) == SQLITE_ROW ? (const char*)sqlite3_column_text(s, 0) : NULL;
        if (mode && (strcmp(mode, "delete") == 0 || strcmp(mode, "truncate") == 0 ||
                     strcmp(mode, "persist") == 0))
            sqlite3_snprintf(sizeof(c->journalWas), c->journalWas, "%s", mode);
        sqlite3_finalize(s);
    }
    c->internal--;
    if (c->journalWas[0] &&
        duet_conn_exec(c, "PRAGMA main.journal_mode = MEMORY", NULL) != SQLITE_OK)
        c->journalWas[0] = '\0';
}

/* Puts back what duet_test_begin() changed, outside the transaction. */
static void session_settings_restore(DuetConn* c) {
    if (c->journalWas[0]) {
        char* sql = sqlite3_mprintf("PRAGMA main.journal_mode = %s", c->journalWas);
        if (sql)
            duet_conn_exec(c, sql, NULL);
        sqlite3_free(sql);
        c->journalWas[0] = '\0';
    }
    if (c->spillWasOn)
        duet_conn_exec(c, "PRAGMA cache_spill = ON", NULL);
}

static void test_begin_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    DuetConn* c = sqlite3_user_data(ctx);
    sqlite3* db = c->db;
    char* err = NULL;
    (void)argc, (void)argv;
    if (c->session) {
        sqlite3_result_error(ctx, "duet_test_begin: a test session is already active", -1);
        return;
    }
    if (!sqlite3_get_autocommit(db)) {
        sqlite3_result_error(
            ctx, "duet_test_begin: cannot start a test session inside a transaction block", -1);
        return;
    }
    /* Changed pages stay in memory: the database file is never written
    ** during the session, ROLLBACK only drops them, and in rollback-journal
    ** mode the session never takes the EXCLUSIVE lock that a spill needs, so
    ** other connections keep reading.  With nothing written to the file, the
    ** journal can live in memory too (no journal file to write and read
    ** back): a crash leaves the file as it was. */
    c->spillWasOn = cache_spill(c) != 0;
    duet_conn_exec(c, "PRAGMA cache_spill = OFF", NULL);
    journal_to_memory(c);
    if (duet_conn_exec(c, "BEGIN", &err) != SQLITE_OK) {
        char* msg = sqlite3_mprintf("duet_test_begin: %s", err ? err : sqlite3_errmsg(db));
        session_settings_restore(c);
        sqlite3_result_error(ctx, msg, -1);
        sqlite3_free(msg);
        sqlite3_free(err);
        return;
    }
    c->session = 1;
    c->progTxn = 0;
    /* Setting an authorizer expires every prepared statement, so a cached
    ** BEGIN or COMMIT is compiled again under the session's rules. */
    sqlite3_set_authorizer(db, session_auth, c);
    sqlite3_commit_hook(db, session_commit_hook, c);
    duet_conn_install_trace(c);
    sqlite3_result_null(ctx);
}

static void test_end_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    DuetConn* c = sqlite3_user_data(ctx);
    sqlite3* db = c->db;
    (void)argc, (void)argv;
    if (!c->session) {
        sqlite3_result_error(ctx, "duet_test_end: no test session is active", -1);
        return;
    }
    int rc = sqlite3_get_autocommit(db) ? SQLITE_OK : duet_conn_exec(c, "ROLLBACK", NULL);
    if (rc != SQLITE_OK) {
        char* msg = sqlite3_mprintf("duet_test_end: %s", sqlite3_errmsg(db));
        sqlite3_result_error(ctx, msg, -1);
        sqlite3_free(msg);
        return;
    }
    c->session = 0;
    c->progTxn = 0;
    session_settings_restore(c);
    sqlite3_commit_hook(db, NULL, NULL);
    /* Clearing the authorizer does not expire statements; installing one
    ** does.  Statements compiled during the session (their BEGIN a no-op)
    ** must be compiled again, so install a permissive one first. */
    sqlite3_set_authorizer(db, allow_all, NULL);
    sqlite3_set_authorizer(db, NULL, NULL);
    sqlite3_result_null(ctx);
}

/* duet_test_session(): the session's state as JSON, for tests and tools. */
static void test_session_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    DuetConn* c = sqlite3_user_data(ctx);
    (void)argc, (void)argv;
    char* json = sqlite3_mprintf("{\"active\":%s,\"depth\":%d}", c->session ? "true" : "false",
                                 c->session ? c->progTxn : 0);
    sqlite3_result_text(ctx, json, -1, sqlite3_free);
}

int duet_test_session_register(sqlite3* db, DuetConn* c) {
    /* DIRECTONLY: a view or trigger must not start or end a session. */
    const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
    int rc =
        sqlite3_create_function(db, "duet_test_begin", 0, flags, c, test_begin_func, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "duet_test_end", 0, flags, c, test_end_func, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "duet_test_session", 0, SQLITE_UTF8, c, test_session_func,
                                     NULL, NULL);
    return rc;
}
