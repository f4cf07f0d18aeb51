/*
** conn.c: per-connection state shared by the duet features, and the
** statement trace callback that drives test sessions and transaction age.
**
** No SQL functions here.  SQLite has one trace callback per connection;
** duet installs it when the extension is loaded (sqlite3_trace_v2 with
** SQLITE_TRACE_STMT, called as each statement starts running) and dispatches
** to txn_age.c then test_session.c.  A program that installs its own trace
** callback replaces duet's: duet_txn_age() then only knows of transactions
** begun before that, and a test session stops mapping BEGIN/COMMIT/ROLLBACK
** onto savepoints (it still discards everything; see test_session.c).
*/
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "duet_ext.h"
SQLITE_EXTENSION_INIT3

DuetConn* duet_conn_new(sqlite3* db) {
    DuetConn* c = sqlite3_malloc(sizeof(*c));
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->db = db;
    c->stmtStart = duet_now();
    return c;
}

void duet_conn_free(void* conn) {
    sqlite3_free(conn);
}

/* Monotonic seconds: transaction ages must not jump with the wall clock. */
double duet_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs duet's own SQL on the connection; the hooks let it through untouched. */
int duet_conn_exec(DuetConn* c, const char* sql, char** pzErr) {
    c->internal++;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, pzErr);
    c->internal--;
    return rc;
}

/* Whether the program is in a transaction it opened, as the program sees it:
** in a test session the real transaction is duet's, so only the program's
** mapped BEGIN counts. */
int duet_conn_in_txn(const DuetConn* c) {
    return c->session ? c->progTxn : !sqlite3_get_autocommit(c->db);
}

/* Rolls back the program's transaction (not a test session's own). */
int duet_conn_rollback(DuetConn* c) {
    if (!duet_conn_in_txn(c))
        return SQLITE_OK;
    if (!c->session)
        return duet_conn_exec(c, "ROLLBACK", NULL);
    c->progTxn = 0;
    return duet_conn_exec(c, "ROLLBACK TO duet_test_txn; RELEASE duet_test_txn", NULL);
}

/* Skips blanks and SQL comments. */
const char* duet_skip_space(const char* z) {
    for (;;) {
        while (*z == ' ' || *z == '\t' || *z == '\n' || *z == '\r' || *z == '\f')
            z++;
        if (z[0] == '-' && z[1] == '-') {
            while (*z && *z != '\n')
                z++;
        } else if (z[0] == '/' && z[1] == '*') {
            const char* end = strstr(z + 2, "*/");
            z = end ? end + 2 : z + strlen(z);
        } else {
            return z;
        }
    }
}

/* Reads one keyword at *pz; returns whether it is kw (case-insensitive). */
static int keyword(const char** pz, const char* kw) {
    const char* z = duet_skip_space(*pz);
    size_t n = strlen(kw);
    if (sqlite3_strnicmp(z, kw, (int)n) != 0)
        return 0;
    char next = z[n];
    if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || next == '_' ||
        (next >= '0' && next <= '9'))
        return 0;
    *pz = z + n;
    return 1;
}

/*
** Classifies a statement's text as BEGIN, COMMIT/END, ROLLBACK or other.
** "ROLLBACK TO name" is a savepoint statement, hence other.  Text is enough:
** this only runs on statements SQLite has already parsed successfully.
*/
int duet_sql_verb(const char* sql) {
    const char* z = duet_skip_space(sql);
    /* Every statement comes here: most start with another letter than the
    ** four keywords', and are told apart by it alone. */
    char c = (char)(*z | 0x20);
    if (c != 'b' && c != 'c' && c != 'e' && c != 'r')
        return DUET_VERB_OTHER;
    if (keyword(&z, "BEGIN"))
        return DUET_VERB_BEGIN;
    if (keyword(&z, "COMMIT") || keyword(&z, "END"))
        return DUET_VERB_COMMIT;
    if (!keyword(&z, "ROLLBACK"))
        return DUET_VERB_OTHER;
    keyword(&z, "TRANSACTION");
    return keyword(&z, "TO") ? DUET_VERB_OTHER : DUET_VERB_ROLLBACK;
}

static int on_trace(unsigned type, void* ctx, void* stmt, void* x) {
    DuetConn* c = ctx;
    const char* sql = x;
    if (type == SQLITE_TRACE_CLOSE) {
        duet_upsert_on_close(c);
        return 0;
    }
    /* A top-level statement is traced with its own text; trigger programs
    ** ("-- TRIGGER name") and statements run from inside another one (a
    ** copy prefixed "-- ") are not the program's statements.  The text
    ** itself may start with the program's comment: "-- note\nBEGIN". */
    if (type != SQLITE_TRACE_STMT || c->internal || sql == NULL ||
        sql != sqlite3_sql((sqlite3_stmt*)stmt))
        return 0;
    int verb = duet_sql_verb(sql);
    duet_txn_age_on_stmt(c, verb);
    duet_test_session_on_stmt(c, verb);
    return 0;
}

int duet_conn_install_trace(DuetConn* c) {
    return sqlite3_trace_v2(c->db, SQLITE_TRACE_STMT | SQLITE_TRACE_CLOSE, on_trace, c);
}
