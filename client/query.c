/*
 * query.c — execute, execute_many, fetch_all/one/val and iterate on a duet_db.
 *
 * Each call translates the placeholders for the database's engine and binds
 * the values before it takes a connection, so a misuse (an unbound :name)
 * never costs a round trip or holds a pooled connection.  Then it runs on
 * the connection pool.c hands out (pinned to the thread or borrowed for the
 * call) and gives it back with the status, so a broken connection is
 * discarded.  Each statement is logged at DUET_LOG_DEBUG with its duration
 * and the connection's name; values are never logged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Values bound without malloc. */
#define SMALL_VALS 16

/* A statement ready to run: translated SQL and the values for its slots. */
typedef struct prepared {
    duet_sql sql;
    const duet_value **vals;
    const duet_value *small[SMALL_VALS];
} prepared;

static void prepared_free(prepared *p) {
    if (p->vals != p->small) free(p->vals);
    duet__sql_free(&p->sql);
}

static duet_status prepared_init(prepared *p, duet_db *db, const char *sql,
                                 const duet_params *params) {
    p->vals = p->small;
    duet_status st = duet__sql_translate(sql, duet_db_backend(db), &p->sql);
    if (st) return st;
    if (p->sql.nslots > SMALL_VALS && !(p->vals = malloc(p->sql.nslots * sizeof *p->vals))) {
        p->vals = p->small;
        return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    }
    return duet__sql_bind(&p->sql, params, p->vals);
}

static duet_status check_args(duet_db *db, const char *sql, const char *fn) {
    duet__err_clear();
    if (!db) return duet__err(DUET_ERR_MISUSE, "%s: NULL database", fn);
    if (!sql) return duet__err(DUET_ERR_MISUSE, "%s: NULL SQL", fn);
    return DUET_OK;
}

static void log_statement(duet_db *db, const char *sql, double start_ms, duet_status st) {
    double ms = duet__now_ms() - start_ms;
    if (st == DUET_OK || st == DUET_ROW || st == DUET_DONE)
        duet__log(DUET_LOG_DEBUG, duet_db_name(db), "%.3f ms: %s", ms, sql);
    else
        duet__log(DUET_LOG_DEBUG, duet_db_name(db), "%.3f ms, failed (%s): %s", ms,
                  duet_status_name(st), sql);
}

/* The common path of execute and the fetches. */
static duet_status run(duet_db *db, const char *sql, const duet_params *params, duet_result **out,
                       int64_t *affected, int64_t *last_id, const char *fn) {
    duet_status st = check_args(db, sql, fn);
    if (st) return st;
    bool logging = duet__log_enabled(DUET_LOG_DEBUG);
    double start = logging ? duet__now_ms() : 0;
    prepared p;
    duet_conn *conn;
    st = prepared_init(&p, db, sql, params);
    if (st == DUET_OK) st = duet__conn_enter(db, &conn);
    if (st == DUET_OK) {
        st = conn->ops->query(conn->raw, p.sql.text, p.vals, p.sql.nslots, out, affected, last_id);
        duet__conn_leave(db, conn, st);
    }
    if (logging) log_statement(db, sql, start, st);
    prepared_free(&p);
    return st;
}

duet_status duet_execute(duet_db *db, const char *sql, const duet_params *params, int64_t *affected,
                         int64_t *last_id) {
    if (affected) *affected = 0;
    if (last_id) *last_id = 0;
    return run(db, sql, params, NULL, affected, last_id, "duet_execute");
}

duet_status duet_fetch_all(duet_db *db, const char *sql, const duet_params *params,
                           duet_result **out) {
    if (!out) return duet__err(DUET_ERR_MISUSE, "duet_fetch_all: NULL out");
    *out = NULL;
    return run(db, sql, params, out, NULL, NULL, "duet_fetch_all");
}

duet_status duet_fetch_one(duet_db *db, const char *sql, const duet_params *params,
                           duet_result **out) {
    if (!out) return duet__err(DUET_ERR_MISUSE, "duet_fetch_one: NULL out");
    *out = NULL;
    duet_result *r;
    duet_status st = run(db, sql, params, &r, NULL, NULL, "duet_fetch_one");
    if (st) return st;
    size_t n = duet_result_nrows(r);
    if (n != 1) {
        duet_result_free(r);
        if (n == 0) return duet__err(DUET_ERR_NOT_FOUND, "fetch_one: the query returned no row");
        return duet__err(DUET_ERR_MULTIPLE_ROWS, "fetch_one: the query returned %zu rows, expected one", n);
    }
    *out = r;
    return DUET_OK;
}

duet_status duet_fetch_val(duet_db *db, const char *sql, const duet_params *params, size_t column,
                           duet_result **out) {
    if (!out) return duet__err(DUET_ERR_MISUSE, "duet_fetch_val: NULL out");
    *out = NULL;
    duet_result *r;
    duet_status st = run(db, sql, params, &r, NULL, NULL, "duet_fetch_val");
    if (st) return st;
    if (duet_result_nrows(r) == 0)
        st = duet__err(DUET_ERR_NOT_FOUND, "fetch_val: the query returned no row");
    else if (column >= duet_result_ncols(r))
        st = duet__err(DUET_ERR_MISUSE, "fetch_val: column %zu out of range (%zu columns)", column,
                       duet_result_ncols(r));
    else
        st = duet__result_extract(r, 0, column, out);
    duet_result_free(r);
    return st;
}

/* ------------------------------------------------------------------ */
/* execute_many                                                       */
/* ------------------------------------------------------------------ */

typedef const duet_value *value_ref;

/*
 * Binds every row up front, so a bad row fails before anything runs.
 * *cells holds n rows of nslots values; (*index)[i] points at row i.
 */
static duet_status bind_rows(const duet_sql *sql, duet_params *const rows[], size_t n,
                             value_ref **cells, value_ref ***index) {
    size_t width = sql->nslots ? sql->nslots : 1;
    *cells = malloc(n * width * sizeof **cells);
    *index = malloc(n * sizeof **index);
    if (!*cells || !*index) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        (*index)[i] = *cells + i * width;
        duet_status st = duet__sql_bind(sql, rows[i], (*index)[i]);
        if (st) {
            char msg[1024]; /* duet__err must not read the buffer it writes */
            snprintf(msg, sizeof msg, "%s", duet_errmsg());
            return duet__err(st, "execute_many: row %zu: %s", i, msg);
        }
    }
    return DUET_OK;
}

duet_status duet_execute_many(duet_db *db, const char *sql, duet_params *const rows[], size_t n,
                              int64_t *affected) {
    if (affected) *affected = 0;
    duet_status st = check_args(db, sql, "duet_execute_many");
    if (st) return st;
    if (n && !rows) return duet__err(DUET_ERR_MISUSE, "duet_execute_many: NULL rows");
    if (n == 0) return DUET_OK;
    double start = duet__now_ms();
    duet_sql t;
    value_ref *cells = NULL, **index = NULL;
    duet_conn *conn;
    st = duet__sql_translate(sql, duet_db_backend(db), &t);
    if (st) return st;
    st = bind_rows(&t, rows, n, &cells, &index);
    if (st == DUET_OK) st = duet__conn_enter(db, &conn);
    if (st == DUET_OK) {
        st = conn->ops->query_many(conn->raw, t.text, (const duet_value *const *const *)index, n,
                                   t.nslots, affected);
        duet__conn_leave(db, conn, st);
    }
    free(cells);
    free(index);
    duet__log(DUET_LOG_DEBUG, duet_db_name(db), "%.3f ms, %zu rows%s: %s", duet__now_ms() - start,
              n, st ? ", failed" : "", sql);
    duet__sql_free(&t);
    return st;
}

/* ------------------------------------------------------------------ */
/* Iteration                                                          */
/* ------------------------------------------------------------------ */

struct duet_rows {
    duet_db *db;
    duet_conn *conn;
    void *cursor;
    duet_status last; /* the status the connection goes back with */
    bool finished;
    double start_ms;
    char *sql; /* for the log line at close; NULL when not logging */
};

duet_status duet_iterate(duet_db *db, const char *sql, const duet_params *params, duet_rows **out) {
    duet_status st = check_args(db, sql, "duet_iterate");
    if (st) return st;
    if (!out) return duet__err(DUET_ERR_MISUSE, "duet_iterate: NULL out");
    *out = NULL;
    duet_rows *rows = calloc(1, sizeof *rows);
    if (!rows) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    rows->db = db;
    rows->start_ms = duet__now_ms();
    if (duet__log_enabled(DUET_LOG_DEBUG)) rows->sql = strdup(sql);
    prepared p;
    st = prepared_init(&p, db, sql, params);
    if (st == DUET_OK) st = duet__conn_enter(db, &rows->conn);
    if (st == DUET_OK) {
        st = rows->conn->ops->iter_open(rows->conn->raw, p.sql.text, p.vals, p.sql.nslots,
                                        &rows->cursor);
        if (st) duet__conn_leave(db, rows->conn, st);
    }
    prepared_free(&p);
    if (st) {
        free(rows->sql);
        free(rows);
        return st;
    }
    *out = rows;
    return DUET_OK;
}

duet_status duet_rows_next(duet_rows *rows, const duet_result **row) {
    if (!rows || !row) return duet__err(DUET_ERR_MISUSE, "duet_rows_next: NULL argument");
    *row = NULL;
    if (rows->finished) return rows->last == DUET_OK ? DUET_DONE : rows->last;
    duet_status st = rows->conn->ops->iter_next(rows->cursor, row);
    if (st != DUET_ROW) {
        rows->finished = true;
        rows->last = st == DUET_DONE ? DUET_OK : st;
    }
    return st;
}

void duet_rows_close(duet_rows *rows) {
    if (!rows) return;
    rows->conn->ops->iter_close(rows->cursor);
    duet__conn_leave(rows->db, rows->conn, rows->last);
    if (rows->sql) log_statement(rows->db, rows->sql, rows->start_ms, rows->last);
    free(rows->sql);
    free(rows);
}
