/*
 * txn.c — transactions, savepoints, duet_atomic and force_rollback.
 *
 * A transaction lives on a connection pinned to the calling thread (pool.c
 * pins it at the outermost begin and unpins it after the outermost commit
 * or rollback), so every call the thread makes in between runs inside it.
 * Nesting is counted on the connection: level 1 is BEGIN, level n > 1 is
 * SAVEPOINT duet_sp_n.  A commit or rollback always ends exactly one level,
 * also when it fails, so the caller's bookkeeping cannot drift from ours.
 *
 * force_rollback runs everything on one connection inside one outer
 * transaction.  On PostgreSQL with the duet extension installed, that is
 * the server's test session (duet.test_begin), which maps the program's
 * BEGIN/COMMIT/ROLLBACK onto savepoints itself; on SQLite with the duet
 * extension loaded (extension=PATH) its duet_test_begin() session does the
 * same, and also discards a COMMIT the program sends as SQL, which would
 * end a client-side outer transaction for real; otherwise we do it here:
 * BEGIN once, and the program's levels become savepoints.  Either way a
 * statement outside a program transaction runs in a level of its own
 * (a savepoint, or BEGIN/COMMIT in the server session), so that an error
 * loses only that statement, and a thread's program transaction keeps the
 * connection to itself until it ends, so threads do not interleave levels.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define FR_STMT_SAVEPOINT "duet_stmt"

static bool is_pg(const duet_conn *c) { return c->ops == &duet__pg_ops; }

/* The caller's error, kept across clean-up work that may set its own. */
typedef struct err_copy {
    duet_status code;
    char sqlstate[6], message[1024], detail[1024], hint[1024];
} err_copy;

static void err_keep(err_copy *e) {
    e->code = duet_errcode();
    snprintf(e->sqlstate, sizeof e->sqlstate, "%s", duet_errsqlstate());
    snprintf(e->message, sizeof e->message, "%s", duet_errmsg());
    snprintf(e->detail, sizeof e->detail, "%s", duet_errdetail());
    snprintf(e->hint, sizeof e->hint, "%s", duet_errhint());
}

static void err_put_back(const err_copy *e) {
    if (e->code == DUET_OK)
        duet__err_clear();
    else
        duet__err_full(e->code, e->sqlstate, e->message, e->detail, e->hint);
}

/* Runs a and then b; one round trip on PostgreSQL. */
static duet_status exec2(duet_conn *c, const char *a, const char *b) {
    if (is_pg(c)) {
        char sql[256];
        snprintf(sql, sizeof sql, "%s; %s", a, b);
        return c->ops->exec_simple(c->raw, sql);
    }
    duet_status st = c->ops->exec_simple(c->raw, a);
    return st != DUET_OK ? st : c->ops->exec_simple(c->raw, b);
}

static void savepoint_name(char *buf, size_t n, int level) {
    snprintf(buf, n, "duet_sp_%d", level);
}

/* The SQL of an outermost BEGIN outside force_rollback. */
static const char *begin_sql(const duet_conn *c, duet_isolation iso, unsigned flags, char *buf,
                             size_t n) {
    if (!is_pg(c)) /* SQLite is serializable; an early write lock avoids upgrade deadlocks */
        return (flags & DUET_TXN_READ_ONLY) ? "BEGIN DEFERRED" : "BEGIN IMMEDIATE";
    const char *level = iso == DUET_READ_COMMITTED    ? " ISOLATION LEVEL READ COMMITTED"
                        : iso == DUET_REPEATABLE_READ ? " ISOLATION LEVEL REPEATABLE READ"
                        : iso == DUET_SERIALIZABLE    ? " ISOLATION LEVEL SERIALIZABLE"
                                                      : "";
    snprintf(buf, n, "BEGIN%s%s", level, (flags & DUET_TXN_READ_ONLY) ? " READ ONLY" : "");
    return buf;
}

/* The program's level 1 in force_rollback: BEGIN for the server session, else a savepoint. */
static bool level1_is_savepoint(const duet_txn_info *t) { return t->fr && !t->fr_server; }

/* ------------------------------------------------------------------ */
/* begin / commit / rollback                                          */
/* ------------------------------------------------------------------ */

static duet_status begin_on(duet_conn *c, duet_isolation iso, unsigned flags) {
    duet_txn_info *t = duet__conn_txn(c);
    char buf[96];
    const char *sql;
    if (t->depth > 0 && (iso != DUET_ISOLATION_DEFAULT || flags != 0))
        return duet__err(DUET_ERR_MISUSE,
                         "isolation level and flags apply to the outermost transaction only");
    if (t->depth > 0 && !t->fr && duet__conn_expired(c, NULL))
        return duet__err(DUET_ERR_EXPIRED, "transaction expired after %g s",
                         duet__db_config(c->db)->pool.transaction_timeout_ms / 1000.0);
    if (t->depth > 0 || level1_is_savepoint(t)) {
        char name[32];
        savepoint_name(name, sizeof name, t->depth + 1);
        snprintf(buf, sizeof buf, "SAVEPOINT %s", name);
        sql = buf;
    } else if (t->fr) {
        sql = "BEGIN"; /* the server session turns it into a savepoint; options cannot apply */
    } else {
        sql = begin_sql(c, iso, flags, buf, sizeof buf);
    }
    duet_status st = c->ops->exec_simple(c->raw, sql);
    if (st != DUET_OK) return st;
    if (t->depth++ == 0 && !t->fr) duet__conn_txn_clock(c, true);
    return DUET_OK;
}

duet_status duet_begin_with(duet_db *db, duet_isolation isolation, unsigned flags) {
    duet_conn *c;
    if (!db) return duet__err(DUET_ERR_MISUSE, "duet_begin: database handle is NULL");
    /* begin_sql maps only these; anything else would silently get the default */
    if (isolation < DUET_ISOLATION_DEFAULT || isolation > DUET_SERIALIZABLE)
        return duet__err(DUET_ERR_MISUSE, "duet_begin_with: unknown isolation level %d",
                         (int)isolation);
    if (flags & ~DUET_TXN_READ_ONLY)
        return duet__err(DUET_ERR_MISUSE, "duet_begin_with: unknown flags 0x%x",
                         flags & ~DUET_TXN_READ_ONLY);
    duet_status st = duet__conn_enter_txn(db, true, &c);
    if (st != DUET_OK) return st;
    st = begin_on(c, isolation, flags);
    duet_txn_info *t = duet__conn_txn(c);
    if (st == DUET_OK && t->fr && t->depth == 1) duet__fr_hold(db, true);
    duet__conn_leave_txn(db, c, st);
    return st;
}

duet_status duet_begin(duet_db *db) { return duet_begin_with(db, DUET_ISOLATION_DEFAULT, 0); }

/* Ends one level; the transaction is gone (or popped) whatever happens. */
static void pop_level(duet_conn *c) {
    duet_txn_info *t = duet__conn_txn(c);
    if (--t->depth == 0 && !t->fr) duet__conn_txn_clock(c, false);
}

/* A transaction ended by transaction_timeout: make sure it is rolled back, forget it. */
static void drop_expired(duet_conn *c) {
    duet_txn_state s = c->ops->txn_state(c->raw);
    if (s == DUET_TXN_ACTIVE || s == DUET_TXN_FAILED) c->ops->exec_simple(c->raw, "ROLLBACK");
    duet__conn_txn(c)->depth = 0;
    duet__conn_txn_clock(c, false);
}

static duet_status rollback_level(duet_conn *c) {
    duet_txn_info *t = duet__conn_txn(c);
    if (t->depth > 1 || level1_is_savepoint(t)) {
        char rb[64], rel[64];
        snprintf(rb, sizeof rb, "ROLLBACK TO SAVEPOINT duet_sp_%d", t->depth);
        snprintf(rel, sizeof rel, "RELEASE SAVEPOINT duet_sp_%d", t->depth);
        return exec2(c, rb, rel);
    }
    /* SQLite may already have rolled back by itself (interrupt, some I/O errors). */
    if (!t->fr && c->ops->txn_state(c->raw) == DUET_TXN_IDLE) return DUET_OK;
    return c->ops->exec_simple(c->raw, "ROLLBACK");
}

static duet_status commit_level(duet_conn *c) {
    duet_txn_info *t = duet__conn_txn(c);
    if (c->ops->txn_state(c->raw) == DUET_TXN_FAILED) {
        /* PostgreSQL would answer COMMIT with a silent ROLLBACK: say so instead. */
        rollback_level(c);
        return duet__err(DUET_ERR_DATABASE,
                         "cannot commit: the transaction failed earlier and was rolled back");
    }
    if (t->depth > 1 || level1_is_savepoint(t)) {
        char sql[64];
        snprintf(sql, sizeof sql, "RELEASE SAVEPOINT duet_sp_%d", t->depth);
        duet_status st = c->ops->exec_simple(c->raw, sql);
        if (st != DUET_OK) rollback_level(c);
        return st;
    }
    return c->ops->exec_simple(c->raw, "COMMIT");
}

/* The shared shape of commit and rollback. */
static duet_status end_level(duet_db *db, bool commit) {
    const char *what = commit ? "duet_commit" : "duet_rollback";
    duet_conn *c;
    if (!db) return duet__err(DUET_ERR_MISUSE, "%s: database handle is NULL", what);
    duet_status st = duet__conn_enter_txn(db, false, &c);
    if (st == DUET_ERR_MISUSE && !c)
        return duet__err(DUET_ERR_MISUSE, "%s: no transaction is open on this thread", what);
    if (st != DUET_OK) return st;
    duet_txn_info *t = duet__conn_txn(c);
    double after;
    if (t->depth == 0) {
        st = duet__err(DUET_ERR_MISUSE, "%s: no transaction is open on this thread", what);
    } else if (!t->fr && duet__conn_expired(c, &after)) {
        drop_expired(c);
        st = commit ? duet__err(DUET_ERR_EXPIRED,
                                "transaction expired after %g s and was rolled back", after)
                    : DUET_OK;
    } else {
        st = commit ? commit_level(c) : rollback_level(c);
        pop_level(c);
    }
    bool unhold = t->fr && t->depth == 0;
    duet__conn_leave_txn(db, c, st);
    if (unhold) duet__fr_hold(db, false);
    return st;
}

duet_status duet_commit(duet_db *db) { return end_level(db, true); }
duet_status duet_rollback(duet_db *db) { return end_level(db, false); }

int duet_txn_depth(duet_db *db) {
    duet_conn *c;
    if (!db || duet__conn_enter_txn(db, false, &c) != DUET_OK) return 0;
    int depth = duet__conn_txn(c)->depth;
    duet__conn_leave_txn(db, c, DUET_OK);
    return depth;
}

/* ------------------------------------------------------------------ */
/* duet_atomic                                                        */
/* ------------------------------------------------------------------ */

/* A short randomized pause before a retry, growing with the attempt. */
static void retry_pause(int attempt) {
    long us = (long)(1000 * (attempt + 1)) + (long)(rand() % 1000);
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

duet_status duet_atomic_with(duet_db *db, duet_isolation isolation, unsigned flags, int max_retries,
                             duet_atomic_fn fn, void *arg) {
    if (!db || !fn) return duet__err(DUET_ERR_MISUSE, "duet_atomic: NULL argument");
    bool outermost = duet_txn_depth(db) == 0;
    for (int attempt = 0;; attempt++) {
        duet_status st = duet_begin_with(db, isolation, flags);
        if (st != DUET_OK) return st;
        st = fn(db, arg);
        if (st == DUET_OK) {
            st = duet_commit(db);
        } else {
            err_copy e; /* fn's error is the one to report, not the rollback's */
            err_keep(&e);
            duet_rollback(db);
            err_put_back(&e);
        }
        if (st != DUET_ERR_SERIALIZATION || !outermost || attempt >= max_retries) return st;
        duet__log(DUET_LOG_INFO, duet_db_name(db), "retrying a transaction (%s)", duet_errmsg());
        retry_pause(attempt);
    }
}

duet_status duet_atomic(duet_db *db, duet_atomic_fn fn, void *arg) {
    return duet_atomic_with(db, DUET_ISOLATION_DEFAULT, 0, 0, fn, arg);
}

/* ------------------------------------------------------------------ */
/* force_rollback                                                     */
/* ------------------------------------------------------------------ */

/* Whether the duet extension's test session is available on this PostgreSQL connection. */
static bool server_session_available(duet_conn *c) {
    duet_result *r = NULL;
    const char *sql =
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_proc "
        "WHERE proname = 'test_begin' AND pronamespace = to_regnamespace('duet'))";
    if (c->ops->query(c->raw, sql, NULL, 0, &r, NULL, NULL) != DUET_OK) return false;
    const char *v = duet_result_text(r, 0, 0);
    bool yes = v && (v[0] == 't' || v[0] == '1');
    duet_result_free(r);
    return yes;
}

/*
 * Whether the duet SQLite extension (extension=PATH) is loaded on this
 * connection.  pragma_function_list needs SQLITE_INTROSPECTION_PRAGMAS;
 * without it, a call of the harmless duet_test_session() tells.
 */
static bool sqlite_session_available(duet_conn *c) {
    duet_result *r = NULL;
    duet_status st = c->ops->query(
        c->raw, "SELECT 1 FROM pragma_function_list WHERE name = 'duet_test_begin'", NULL, 0, &r,
        NULL, NULL);
    bool yes = st == DUET_OK && duet_result_nrows(r) > 0;
    duet_result_free(r);
    if (st == DUET_OK) return yes;
    r = NULL;
    yes = c->ops->query(c->raw, "SELECT duet_test_session()", NULL, 0, &r, NULL, NULL) == DUET_OK;
    duet_result_free(r);
    return yes;
}

static duet_status session_start(duet_db *db, duet_conn *c) {
    duet_txn_info *t = duet__conn_txn(c);
    t->depth = 0;
    t->fr_stmt = false;
    t->fr_server = false;
    bool pg = is_pg(c);
    if (pg ? server_session_available(c) : sqlite_session_available(c)) {
        if (c->ops->exec_simple(c->raw, pg ? "SELECT duet.test_begin()"
                                           : "SELECT duet_test_begin()") == DUET_OK) {
            t->fr_server = true;
            duet__log(DUET_LOG_INFO, duet_db_name(db), "force_rollback: %s",
                      pg ? "server test session" : "SQLite extension test session");
            return DUET_OK;
        }
        duet__log(DUET_LOG_WARNING, duet_db_name(db),
                  "force_rollback: %s failed (%s); using savepoints",
                  pg ? "duet.test_begin()" : "duet_test_begin()", duet_errmsg());
        if (c->ops->txn_state(c->raw) != DUET_TXN_IDLE) c->ops->exec_simple(c->raw, "ROLLBACK");
    }
    duet__log(DUET_LOG_INFO, duet_db_name(db), "force_rollback: client savepoints");
    return c->ops->exec_simple(c->raw, "BEGIN");
}

static duet_status session_end(duet_conn *c) {
    duet_txn_info *t = duet__conn_txn(c);
    duet_status st = DUET_OK;
    if (t->fr_server)
        st = c->ops->exec_simple(c->raw, is_pg(c) ? "SELECT duet.test_end()"
                                                  : "SELECT duet_test_end()");
    if (st != DUET_OK || c->ops->txn_state(c->raw) != DUET_TXN_IDLE) {
        duet_txn_state s = c->ops->txn_state(c->raw);
        if (s == DUET_TXN_ACTIVE || s == DUET_TXN_FAILED)
            st = c->ops->exec_simple(c->raw, "ROLLBACK");
    }
    t->fr = t->fr_server = t->fr_stmt = false;
    t->depth = 0;
    return st;
}

duet_status duet__fr_switch_off(duet_db *db, bool at_close) {
    duet__err_clear();
    if (!duet__fr_active(db)) return DUET_OK;
    duet_conn *c = duet__fr_remove(db, at_close);
    if (!c) return duet_errcode(); /* DUET_OK when another thread switched it off */
    duet__conn_watch(c, true); /* duet_close comes here: a dead server must not hang it */
    duet_status st = session_end(c);
    duet__conn_watch(c, false);
    duet__pool_put(db, c, st);
    return st;
}

duet_status duet_force_rollback(duet_db *db, bool on) {
    if (!db) return duet__err(DUET_ERR_MISUSE, "duet_force_rollback: database handle is NULL");
    if (!on) return duet__fr_switch_off(db, false); /* which clears the thread's error */
    duet__err_clear();
    if (duet__fr_active(db)) return DUET_OK;
    if (duet_txn_depth(db) > 0)
        return duet__err(DUET_ERR_MISUSE,
                         "duet_force_rollback: cannot switch on inside a transaction on this thread");
    duet_conn *c;
    duet_status st = duet__pool_get(db, "force_rollback", &c);
    if (st != DUET_OK) return st;
    st = session_start(db, c);
    if (st != DUET_OK) {
        duet__pool_put(db, c, st);
        return st;
    }
    duet__conn_txn(c)->fr = true;
    if (!duet__fr_install(db, c)) { /* another thread switched on meanwhile: use its session */
        duet__pool_put(db, c, session_end(c));
        duet__err_clear();
    }
    return DUET_OK;
}

/*
 * Around each statement outside a program transaction, so that a failure
 * loses only that statement: a savepoint in client mode; in the server
 * session a program-level BEGIN, because the server refuses SAVEPOINT
 * outside a program transaction and its ROLLBACK after a failed statement
 * would discard the whole session's work.
 */
duet_status duet__fr_stmt_enter(duet_db *db, duet_conn *c) {
    (void)db;
    duet_txn_info *t = duet__conn_txn(c);
    if (t->depth > 0) return DUET_OK;
    duet_status st =
        c->ops->exec_simple(c->raw, t->fr_server ? "BEGIN" : "SAVEPOINT " FR_STMT_SAVEPOINT);
    t->fr_stmt = st == DUET_OK;
    return st;
}

static void fr_stmt_finish(duet_conn *c, duet_status status) {
    duet_txn_info *t = duet__conn_txn(c);
    t->fr_stmt = false;
    if (t->fr_server)
        c->ops->exec_simple(c->raw, status == DUET_OK ? "COMMIT" : "ROLLBACK");
    else if (status == DUET_OK)
        c->ops->exec_simple(c->raw, "RELEASE SAVEPOINT " FR_STMT_SAVEPOINT);
    else
        exec2(c, "ROLLBACK TO SAVEPOINT " FR_STMT_SAVEPOINT,
              "RELEASE SAVEPOINT " FR_STMT_SAVEPOINT);
}

void duet__fr_stmt_leave(duet_db *db, duet_conn *c, duet_status status) {
    duet_txn_info *t = duet__conn_txn(c);
    err_copy e; /* the statement's outcome is what the caller sees */
    err_keep(&e);
    if (t->fr_stmt) {
        /* a failed statement can leave PostgreSQL aborted even when status is OK (iterate) */
        bool failed = status != DUET_OK || c->ops->txn_state(c->raw) == DUET_TXN_FAILED;
        fr_stmt_finish(c, failed ? DUET_ERR_DATABASE : DUET_OK);
    } else if (t->depth == 0 && c->ops->txn_state(c->raw) == DUET_TXN_FAILED) {
        c->ops->exec_simple(c->raw, "ROLLBACK");
    }
    if (!t->fr_server && c->ops->txn_state(c->raw) == DUET_TXN_IDLE) {
        /* The outer transaction ended under us (COMMIT sent as SQL, SQLite's own rollback). */
        duet__log(DUET_LOG_WARNING, duet_db_name(db),
                  "force_rollback: a statement ended the outer transaction; opening a new one");
        c->ops->exec_simple(c->raw, "BEGIN");
    }
    err_put_back(&e);
}
