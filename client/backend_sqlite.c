/*
 * backend_sqlite.c — the SQLite backend behind duet_backend_ops.
 *
 * A connection is a sqlite3 handle opened with SQLITE_OPEN_URI, so that
 * pool.c can give every connection of a ":memory:" pool the same memdb
 * database ("file:/name?vfs=memdb").  The extension=PATH library, if any,
 * is loaded and then Oxyde's pragmas are applied on every new connection; journal_mode only when the config still carries it (pool.c
 * sets WAL on the first connection of a file, since it is stored in it).
 *
 * Values keep their SQLite storage class in results: integers, doubles and
 * blobs are not turned into text.  Errors map onto the duet_status enum the
 * way the PostgreSQL backend maps SQLSTATEs, so the same scenario fails the
 * same way on both engines: a constraint is "integrity", SQLITE_BUSY past
 * busy_timeout is "timeout", and a statement that does not prepare (bad
 * syntax, no such table or column) is "syntax".  Nothing is ever printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "internal.h"

typedef struct sq_cursor {
    sqlite3 *db;
    sqlite3_stmt *stmt;
    duet_result *row;
} sq_cursor;

/* ------------------------------------------------------------------ */
/* Errors                                                             */
/* ------------------------------------------------------------------ */

static duet_status status_of(int rc, bool preparing) {
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT: return DUET_ERR_INTEGRITY;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_INTERRUPT: return DUET_ERR_TIMEOUT;
    case SQLITE_NOMEM: return DUET_ERR_NO_MEMORY;
    case SQLITE_CANTOPEN:
    case SQLITE_NOTADB: return DUET_ERR_CONNECTION;
    case SQLITE_MISUSE:
    case SQLITE_RANGE: return DUET_ERR_MISUSE;
    case SQLITE_ERROR: return preparing ? DUET_ERR_SYNTAX : DUET_ERR_DATABASE;
    default: return DUET_ERR_DATABASE;
    }
}

/* The engine's message, and its result-code name as the detail ("UNIQUE constraint failed"). */
static duet_status sq_error(sqlite3 *db, int rc, bool preparing) {
    char detail[96];
    snprintf(detail, sizeof detail, "SQLite result code %d (%s).", rc, sqlite3_errstr(rc));
    return duet__err_full(status_of(rc, preparing), "", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
                          detail, "");
}

/* ------------------------------------------------------------------ */
/* Connections                                                        */
/* ------------------------------------------------------------------ */

static bool is_memory(const duet_config *cfg) {
    return cfg->sqlite_shared_name || !cfg->sqlite_path || strcmp(cfg->sqlite_path, ":memory:") == 0;
}

static duet_status apply_pragmas(sqlite3 *db, const duet_config *cfg) {
    char sql[160];
    int rc;
    sqlite3_busy_timeout(db, cfg->busy_timeout);
    snprintf(sql, sizeof sql, "PRAGMA cache_size = %d; PRAGMA synchronous = %s", cfg->cache_size,
             cfg->synchronous ? cfg->synchronous : "NORMAL");
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK && cfg->journal_mode && !is_memory(cfg)) {
        snprintf(sql, sizeof sql, "PRAGMA journal_mode = %s", cfg->journal_mode);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    }
    return rc == SQLITE_OK ? DUET_OK : sq_error(db, rc, false);
}

/*
 * extension=PATH.  Loading is enabled for this one C call only (never for
 * SQL's load_extension(), which would let any statement load code), and
 * switched off again whatever happens.
 */
static duet_status load_extension(sqlite3 *db, const char *path) {
    char *msg = NULL;
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 1, (int *)NULL);
    int rc = sqlite3_load_extension(db, path, NULL, &msg);
    sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)NULL);
    duet_status st = DUET_OK;
    if (rc != SQLITE_OK)
        st = duet__err(DUET_ERR_CONFIG, "cannot load sqlite extension \"%s\": %s", path,
                       msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return st;
}

static duet_status sq_connect(const duet_config *cfg, void **raw) {
    const char *name = cfg->sqlite_shared_name ? cfg->sqlite_shared_name : cfg->sqlite_path;
    if (!name) return duet__err(DUET_ERR_CONFIG, "sqlite: no database path");
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(name, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        duet_status st = duet__err(DUET_ERR_CONNECTION, "cannot open sqlite database \"%s\": %s",
                                   cfg->sqlite_path ? cfg->sqlite_path : name,
                                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return st;
    }
    sqlite3_extended_result_codes(db, 1);
    duet_status st = cfg->sqlite_extension ? load_extension(db, cfg->sqlite_extension) : DUET_OK;
    if (st == DUET_OK) st = apply_pragmas(db, cfg);
    if (st) {
        sqlite3_close(db);
        return st;
    }
    *raw = db;
    return DUET_OK;
}

/*
 * An open transaction is rolled back first: sqlite3_close_v2 leaves a
 * connection with a statement still unfinalized (a leaked iterator) open
 * as a zombie, and the zombie would keep its transaction and its locks.
 */
static void sq_disconnect(void *raw) {
    if (raw && !sqlite3_get_autocommit(raw)) sqlite3_exec(raw, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close_v2(raw);
}

static duet_txn_state sq_txn_state(void *raw) {
    if (!raw) return DUET_TXN_BROKEN;
    return sqlite3_get_autocommit(raw) ? DUET_TXN_IDLE : DUET_TXN_ACTIVE;
}

static void sq_interrupt(void *raw) {
    if (raw) sqlite3_interrupt(raw);
}

/* sqlite3_interrupt takes effect at once and never outlasts the statements it interrupts. */
static bool sq_interrupt_op(void *raw, double wait_ms) {
    (void)wait_ms;
    sq_interrupt(raw);
    return true;
}

/* Runs every statement of sql, discarding rows; prepare errors are "syntax". */
static duet_status sq_exec_simple(void *raw, const char *sql) {
    sqlite3 *db = raw;
    while (sql && *sql) {
        sqlite3_stmt *stmt;
        int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, &sql);
        if (rc != SQLITE_OK) return sq_error(db, rc, true);
        if (!stmt) break;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) continue;
        sqlite3_finalize(stmt);
        if (rc != SQLITE_DONE) return sq_error(db, rc, false);
    }
    return DUET_OK;
}

static duet_status sq_ping(void *raw) { return sq_exec_simple(raw, "SELECT 1"); }

/* ------------------------------------------------------------------ */
/* Statements                                                         */
/* ------------------------------------------------------------------ */

/* One statement per call: a second one in the text would silently not run. */
static duet_status check_tail(sqlite3 *db, const char *tail) {
    while (*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == '\r' || *tail == ';') tail++;
    if (!*tail) return DUET_OK;
    sqlite3_stmt *next = NULL;
    int rc = sqlite3_prepare_v2(db, tail, -1, &next, NULL);
    sqlite3_finalize(next);
    if (rc == SQLITE_OK && !next) return DUET_OK; /* only comments */
    return duet__err(DUET_ERR_MISUSE, "more than one statement in one call: run them one at a time");
}

/*
 * Values are bound SQLITE_STATIC (no copy) when they outlive the statement's
 * use, as in query and query_many; iteration outlives the caller's params.
 */
static duet_status bind_values(sqlite3 *db, sqlite3_stmt *stmt, const duet_value *const *vals,
                               size_t n, bool copy) {
    sqlite3_destructor_type how = copy ? SQLITE_TRANSIENT : SQLITE_STATIC;
    for (size_t k = 0; k < n; k++) {
        const duet_value *v = vals[k];
        int i = (int)k + 1, rc;
        switch (v->type) {
        case DUET_V_INT:
        case DUET_V_BOOL: rc = sqlite3_bind_int64(stmt, i, v->i); break;
        case DUET_V_DOUBLE: rc = sqlite3_bind_double(stmt, i, v->d); break;
        case DUET_V_TEXT: rc = sqlite3_bind_text64(stmt, i, v->data, v->len, how, SQLITE_UTF8); break;
        case DUET_V_BYTES: rc = sqlite3_bind_blob64(stmt, i, v->data, v->len, how); break;
        default: rc = sqlite3_bind_null(stmt, i); break;
        }
        if (rc != SQLITE_OK) return sq_error(db, rc, false);
    }
    return DUET_OK;
}

static duet_status prepare(sqlite3 *db, const char *sql, const duet_value *const *vals, size_t n,
                           bool copy, sqlite3_stmt **out) {
    const char *tail;
    *out = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, out, &tail);
    if (rc != SQLITE_OK) return sq_error(db, rc, true);
    duet_status st = *out ? check_tail(db, tail) : DUET_OK;
    if (st == DUET_OK && *out) st = bind_values(db, *out, vals, n, copy);
    if (st) {
        sqlite3_finalize(*out);
        *out = NULL;
    }
    return st;
}

static duet_result *new_result(sqlite3_stmt *stmt) {
    int ncols = stmt ? sqlite3_column_count(stmt) : 0;
    duet_result *r = duet__result_new((size_t)ncols);
    for (int c = 0; r && c < ncols; c++) {
        if (duet__result_set_colname(r, (size_t)c, sqlite3_column_name(stmt, c))) {
            duet_result_free(r);
            return NULL;
        }
    }
    return r;
}

/*
 * Appends the current row of stmt to r, keeping each value's storage class.
 * One sqlite3_column_value per cell, then the cheap sqlite3_value_* calls:
 * each sqlite3_column_* call pays API entry and exit, which showed as a
 * third of fetch_all's overhead.  The value is "unprotected", which is fine
 * because a connection is used by one thread at a time (SQLITE_OPEN_NOMUTEX).
 */
static duet_status add_row(duet_result *r, sqlite3_stmt *stmt) {
    duet_status st = duet__result_add_row(r);
    size_t ncols = duet_result_ncols(r);
    for (size_t c = 0; st == DUET_OK && c < ncols; c++) {
        sqlite3_value *v = sqlite3_column_value(stmt, (int)c);
        switch (sqlite3_value_type(v)) {
        case SQLITE_INTEGER: duet__result_set_int(r, c, sqlite3_value_int64(v)); break;
        case SQLITE_FLOAT: duet__result_set_double(r, c, sqlite3_value_double(v)); break;
        case SQLITE_TEXT: {
            const char *t = (const char *)sqlite3_value_text(v);
            st = duet__result_set_text(r, c, t, (size_t)sqlite3_value_bytes(v));
            break;
        }
        case SQLITE_BLOB: {
            const void *b = sqlite3_value_blob(v);
            st = duet__result_set_blob(r, c, b, (size_t)sqlite3_value_bytes(v));
            break;
        }
        default: break; /* NULL: cells start NULL */
        }
    }
    return st;
}

/*
 * Steps to the end.  first_int gets the first column of the first row when
 * it is an integer (RETURNING id), for last_id.
 */
static duet_status step_all(sqlite3 *db, sqlite3_stmt *stmt, duet_result *r, int64_t *first_int) {
    int rc;
    bool first = true;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (first && sqlite3_column_count(stmt) > 0 &&
            sqlite3_column_type(stmt, 0) == SQLITE_INTEGER)
            *first_int = sqlite3_column_int64(stmt, 0);
        first = false;
        if (r) {
            duet_status st = add_row(r, stmt);
            if (st) return st;
        }
    }
    return rc == SQLITE_DONE ? DUET_OK : sq_error(db, rc, false);
}

/* Rows changed by the statement just run: 0 for reads and DDL, as on PostgreSQL. */
static int64_t changed_rows(sqlite3 *db, sqlite3_stmt *stmt, int64_t total_before) {
    if (sqlite3_stmt_readonly(stmt) || sqlite3_total_changes64(db) == total_before) return 0;
    return sqlite3_changes64(db);
}

static duet_status sq_query(void *raw, const char *sql, const duet_value *const *vals, size_t n,
                            duet_result **out, int64_t *affected, int64_t *last_id) {
    sqlite3 *db = raw;
    sqlite3_stmt *stmt;
    duet_status st = prepare(db, sql, vals, n, false, &stmt);
    if (st) return st;
    duet_result *r = NULL;
    if (out && !(r = new_result(stmt))) st = duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    int64_t rowid_before = sqlite3_last_insert_rowid(db);
    int64_t total_before = sqlite3_total_changes64(db), first_int = 0;
    if (st == DUET_OK && stmt) st = step_all(db, stmt, r, &first_int);
    if (st == DUET_OK) {
        int64_t rowid = sqlite3_last_insert_rowid(db);
        if (affected) *affected = stmt ? changed_rows(db, stmt, total_before) : 0;
        if (last_id) *last_id = rowid != rowid_before ? rowid : first_int;
    }
    sqlite3_finalize(stmt);
    if (st) {
        duet_result_free(r);
        return st;
    }
    if (out) *out = r;
    return DUET_OK;
}

/* ------------------------------------------------------------------ */
/* execute_many                                                       */
/* ------------------------------------------------------------------ */

static duet_status run_rows(sqlite3 *db, sqlite3_stmt *stmt, const duet_value *const *const *rows,
                            size_t nrows, size_t nvals, int64_t *total) {
    int64_t ignored;
    for (size_t i = 0; i < nrows; i++) {
        int64_t before = sqlite3_total_changes64(db);
        duet_status st = bind_values(db, stmt, rows[i], nvals, false);
        if (st == DUET_OK) st = step_all(db, stmt, NULL, &ignored);
        if (st) {
            char msg[1024], detail[64];
            snprintf(msg, sizeof msg, "%s", duet_errmsg()); /* err_full must not read its own buffer */
            snprintf(detail, sizeof detail, "execute_many: row %zu failed.", i);
            return duet__err_full(st, "", msg, detail, "");
        }
        *total += changed_rows(db, stmt, before);
        sqlite3_reset(stmt);
    }
    return DUET_OK;
}

/* All or nothing: BEGIN IMMEDIATE, or a savepoint inside the caller's transaction. */
static duet_status sq_query_many(void *raw, const char *sql, const duet_value *const *const *rows,
                                 size_t nrows, size_t nvals, int64_t *affected) {
    sqlite3 *db = raw;
    bool nested = !sqlite3_get_autocommit(db);
    int64_t total = 0;
    sqlite3_stmt *stmt;
    duet_status st = prepare(db, sql, NULL, 0, false, &stmt);
    if (st) return st;
    if (!stmt) return duet__err(DUET_ERR_MISUSE, "execute_many: empty statement");
    st = sq_exec_simple(db, nested ? "SAVEPOINT duet_many" : "BEGIN IMMEDIATE");
    if (st == DUET_OK) {
        st = run_rows(db, stmt, rows, nrows, nvals, &total);
        sqlite3_finalize(stmt);
        stmt = NULL;
        if (st == DUET_OK) st = sq_exec_simple(db, nested ? "RELEASE duet_many" : "COMMIT");
        if (st) /* the error is already set: roll back without touching it */
            sqlite3_exec(db, nested ? "ROLLBACK TO duet_many; RELEASE duet_many" : "ROLLBACK", NULL,
                         NULL, NULL);
    }
    sqlite3_finalize(stmt);
    if (st == DUET_OK && affected) *affected = total;
    return st;
}

/* ------------------------------------------------------------------ */
/* Iteration                                                          */
/* ------------------------------------------------------------------ */

static void sq_iter_close(void *cursor) {
    sq_cursor *c = cursor;
    if (!c) return;
    sqlite3_finalize(c->stmt);
    duet_result_free(c->row);
    free(c);
}

static duet_status sq_iter_open(void *raw, const char *sql, const duet_value *const *vals,
                                size_t n, void **cursor) {
    sq_cursor *c = calloc(1, sizeof *c);
    if (!c) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    c->db = raw;
    duet_status st = prepare(c->db, sql, vals, n, true, &c->stmt);
    if (st == DUET_OK && !(c->row = new_result(c->stmt)))
        st = duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    if (st) {
        sq_iter_close(c);
        return st;
    }
    *cursor = c;
    return DUET_OK;
}

static duet_status sq_iter_next(void *cursor, const duet_result **row) {
    sq_cursor *c = cursor;
    if (!c->stmt) return DUET_DONE;
    int rc = sqlite3_step(c->stmt);
    if (rc == SQLITE_DONE) return DUET_DONE;
    if (rc != SQLITE_ROW) return sq_error(c->db, rc, false);
    duet__result_clear_rows(c->row);
    duet_status st = add_row(c->row, c->stmt);
    if (st) return st;
    *row = c->row;
    return DUET_ROW;
}

const duet_backend_ops duet__sqlite_ops = {
    .name = "sqlite",
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .ping = sq_ping,
    .txn_state = sq_txn_state,
    .exec_simple = sq_exec_simple,
    .interrupt = sq_interrupt_op,
    .abort = sq_interrupt, /* no socket: an interrupt always returns at once */
    .query = sq_query,
    .query_many = sq_query_many,
    .iter_open = sq_iter_open,
    .iter_next = sq_iter_next,
    .iter_close = sq_iter_close,
};
