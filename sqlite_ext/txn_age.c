/*
** txn_age.c: transaction age and a per-connection transaction timeout.
**
**     BEGIN;
**     SELECT duet_txn_age();          -- seconds since BEGIN (REAL); NULL outside
**     SELECT duet_txn_timeout(30);    -- limit, in seconds; 0 turns it off
**     SELECT duet_txn_timeout();      -- the current limit
**
** How the start is known: SQLite has no "transaction began" hook, so the
** statement trace (conn.c) notes the time at each statement start while the
** program is outside a transaction; the statement that opens a transaction
** (BEGIN) is the last one noted.  In a test session the program's own
** BEGIN counts, not the session's.
**
** The limit: a statement that starts in a transaction older than the limit,
** or that is still running when its transaction (or, in autocommit mode,
** itself) passes the limit, is interrupted through the progress handler
** (SQLITE_INTERRUPT) and the transaction is rolled back.  SQLite gives no
** way to set the message of an interrupted statement, so sqlite3_errmsg()
** says "interrupted"; the reason, "duet_txn_timeout: transaction older than
** N s", goes to the SQLite error log (sqlite3_log) and is returned by
** duet_txn_timeout_error() (the last timeout on this connection, or NULL).
** Nothing else can fail a running statement with a message of duet's in
** SQLite 3.40: the trace callback's result is ignored, the progress handler
** can only interrupt, an authorizer only answers at prepare time and says
** "not authorized", and a message set on the connection from inside a step
** (sqlite3_set_errmsg() of newer SQLite) is replaced by the step's own error
** when it returns.
** As after any interrupted write in SQLite, the program's next statements
** run in autocommit mode: its COMMIT fails with "cannot commit - no
** transaction is active".  A test session is exempt from the limit, as the
** PostgreSQL reaper exempts it.  While a limit is set the progress handler
** runs at every VM check point (a few percent of CPU-bound statements);
** duet owns the connection's progress handler then (SQLite keeps one per
** connection and cannot say whose it is): duet_txn_timeout(N) replaces the
** program's, duet_txn_timeout(0) removes it only if a limit had been set.
** A program that installs its own handler over duet's loses the
** interruption, not the rollback: once its transaction has expired, each
** statement it runs is rolled back before the next one, so nothing of that
** transaction commits, until its COMMIT fails or it runs ROLLBACK.
*/
#include <math.h>
#include <stddef.h>

#include "duet_ext.h"
SQLITE_EXTENSION_INIT3

/* The age of the program's transaction, or of the running autocommit
** statement; negative when there is none. */
static double txn_age(const DuetConn* c) {
    return duet_now() - c->stmtStart;
}

/* A test session is exempt, as the PostgreSQL reaper exempts it: SQLite
** rolls back the whole transaction of an interrupted write, which would
** be the session's own. */
static int expired(const DuetConn* c) {
    return c->timeout > 0 && !c->session && txn_age(c) > c->timeout;
}

static void note_timeout(DuetConn* c) {
    sqlite3_snprintf(sizeof(c->timeoutError), c->timeoutError,
                     "duet_txn_timeout: transaction older than %g s", c->timeout);
    sqlite3_log(SQLITE_INTERRUPT, "%s", c->timeoutError);
}

/* Runs the statement about to start, whose transaction has just expired
** and been rolled back, in a transaction of duet's that is rolled back before
** the next statement: it is interrupted at its first check point (every
** statement has one before it touches a table), and if it is not because
** the program has put its own progress handler in place of duet's, what it
** does is still not committed on its own, out of a transaction the program
** believes whole. */
static void doom(DuetConn* c) {
    c->kill = 1;
    if (duet_conn_exec(c, "BEGIN", NULL) == SQLITE_OK)
        c->rollbackDue = 1;
}

void duet_txn_age_on_stmt(DuetConn* c, int verb) {
    /* kill is 1 while an interruption is due, 2 once it was made: a
    ** statement that ended without it left the program unaware. */
    int unaware = c->kill == 1;
    c->kill = 0;
    if (c->rollbackDue) {
        /* The interrupted statement was a read: SQLite kept its transaction;
        ** or duet's transaction of doom() is still open. */
        c->rollbackDue = 0;
        if (verb != DUET_VERB_ROLLBACK)
            duet_conn_rollback(c);
        /* Until it is told (or ends its transaction), the program's
        ** statements keep running in a transaction that will not commit. */
        if (unaware && verb != DUET_VERB_COMMIT && verb != DUET_VERB_ROLLBACK) {
            doom(c);
            return;
        }
    }
    if (!duet_conn_in_txn(c)) {
        c->stmtStart = duet_now();
        return;
    }
    if (!expired(c) || verb == DUET_VERB_ROLLBACK)
        return;
    note_timeout(c);
    duet_conn_rollback(c);
    /* COMMIT then fails by itself (no transaction is active). */
    if (verb != DUET_VERB_COMMIT)
        doom(c);
}

/* Called every VM check point while a limit is set; reads the clock every
** 64th call only. */
static int on_progress(void* ctx) {
    DuetConn* c = ctx;
    if (c->internal)
        return 0;
    if (c->kill) {
        c->kill = 2;
        return 1;
    }
    if ((++c->ticks & 63) != 0 || !expired(c))
        return 0;
    note_timeout(c);
    c->kill = 2;
    /* A write is rolled back by SQLite with its transaction; a read is not. */
    c->rollbackDue = duet_conn_in_txn(c);
    return 1;
}

static void txn_age_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    DuetConn* c = sqlite3_user_data(ctx);
    (void)argc, (void)argv;
    if (duet_conn_in_txn(c))
        sqlite3_result_double(ctx, txn_age(c));
    else
        sqlite3_result_null(ctx);
}

static void txn_timeout_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    DuetConn* c = sqlite3_user_data(ctx);
    if (argc == 1) {
        int type = sqlite3_value_numeric_type(argv[0]);
        double limit = sqlite3_value_double(argv[0]);
        if ((type != SQLITE_INTEGER && type != SQLITE_FLOAT) || !(limit >= 0) || isinf(limit)) {
            sqlite3_result_error(
                ctx, "duet_txn_timeout: timeout must be a non-negative number of seconds", -1);
            return;
        }
        /* duet installed the handler only if a limit was set: turning an
        ** unset limit off leaves the program's own handler in place. */
        int owned = c->timeout > 0;
        c->timeout = limit;
        c->kill = 0;
        if (limit > 0)
            sqlite3_progress_handler(c->db, 1, on_progress, c);
        else if (owned)
            sqlite3_progress_handler(c->db, 0, NULL, NULL);
    }
    sqlite3_result_double(ctx, c->timeout);
}

static void txn_timeout_error_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    DuetConn* c = sqlite3_user_data(ctx);
    (void)argc, (void)argv;
    if (c->timeoutError[0])
        sqlite3_result_text(ctx, c->timeoutError, -1, SQLITE_TRANSIENT);
}

int duet_txn_age_register(sqlite3* db, DuetConn* c) {
    const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
    int rc =
        sqlite3_create_function(db, "duet_txn_age", 0, SQLITE_UTF8, c, txn_age_func, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "duet_txn_timeout", 0, flags, c, txn_timeout_func, NULL,
                                     NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "duet_txn_timeout", 1, flags, c, txn_timeout_func, NULL,
                                     NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function(db, "duet_txn_timeout_error", 0, flags, c,
                                     txn_timeout_error_func, NULL, NULL);
    return rc;
}
