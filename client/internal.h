/*
 * internal.h — what the files of libduet share.  Not installed.
 *
 * Who owns what:
 *   error.c          the calling thread's last error
 *   log.c            the process-wide log callback
 *   config.c, url.c  duet_config: URL and key/value parsing, defaults
 *   params.c         duet_params and the :name / ? / $n translation
 *   result.c         duet_result
 *   backend_pg.c     the PostgreSQL backend (libpq)
 *   backend_sqlite.c the SQLite backend
 *   pool.c           duet_db lifecycle, the pool, pinning of connections to threads
 *   txn.c            transactions, savepoints, duet_atomic, force_rollback
 *   query.c          execute / fetch / iterate on a duet_db
 *   registry.c       named connections
 */
#ifndef DUET_INTERNAL_H
#define DUET_INTERNAL_H

#include <pthread.h>
#include <time.h>

#include "duet.h"

/* ------------------------------------------------------------------ */
/* Errors (error.c)                                                   */
/* ------------------------------------------------------------------ */

/* Sets the calling thread's error (clearing SQLSTATE, detail and hint); returns code. */
duet_status duet__err(duet_status code, const char *fmt, ...) DUET_PRINTF(2, 3);

/* Sets every field; NULL strings become "", and they may be the current error's own. */
duet_status duet__err_full(duet_status code, const char *sqlstate, const char *message,
                           const char *detail, const char *hint);

void duet__err_clear(void);

/* Maps a SQLSTATE to a status (class 23 -> integrity, 08 -> connection...). */
duet_status duet__status_from_sqlstate(const char *sqlstate);

/* ------------------------------------------------------------------ */
/* Logging (log.c)                                                    */
/* ------------------------------------------------------------------ */

bool duet__log_enabled(duet_log_level level);
void duet__log(duet_log_level level, const char *name, const char *fmt, ...) DUET_PRINTF(3, 4);

/* Monotonic clock in milliseconds. */
double duet__now_ms(void);
/* A duet__now_ms instant as the deadline of a timed wait on a duet__cond_init_monotonic
 * condition variable (the waits use the monotonic clock too). */
struct timespec duet__abs_time(double at_ms);
int duet__cond_init_monotonic(pthread_cond_t *cv);

/* ------------------------------------------------------------------ */
/* Configuration (config.c, url.c)                                    */
/* ------------------------------------------------------------------ */

typedef struct duet_pool_settings {
    int max_connections;                    /* 20 */
    int min_connections;                    /* 5 */
    double acquire_timeout_ms;              /* 30 s */
    double idle_timeout_ms;                 /* 600 s; 0 = never */
    double max_lifetime_ms;                 /* 1800 s; 0 = never */
    bool test_before_acquire;               /* true */
    double transaction_timeout_ms;          /* 300 s; 0 = off */
    double transaction_cleanup_interval_ms; /* 60 s */
    double leak_threshold_ms;               /* 0 = off */
    bool force_rollback;                    /* false */
    bool pooler_transaction;                /* pooler=transaction: unnamed statements only */
} duet_pool_settings;

/* One libpq keyword/value pair passed through to PQconnectdbParams. */
typedef struct duet_kv {
    char *key;
    char *value;
} duet_kv;

struct duet_config {
    duet_backend backend; /* 0 until a scheme is set */
    char *scheme;         /* as written: "postgresql", "postgres", "sqlite" */

    /* PostgreSQL: host, port, user, password, dbname and every libpq option. */
    duet_kv *pg_params;
    size_t pg_nparams;

    /* SQLite: path as given (":memory:" for the shared in-memory database). */
    char *sqlite_path;
    /*
     * Set by pool.c for ":memory:": the name of the memdb VFS database
     * ("file:/duet-...?vfs=memdb") that every connection of one pool opens,
     * so the pool shares one in-memory database.  NULL otherwise.
     */
    char *sqlite_shared_name;
    char *journal_mode; /* "WAL" */
    char *synchronous;  /* "NORMAL" */
    int cache_size;     /* 10000 */
    int busy_timeout;   /* 5000 ms */
    /*
     * extension=PATH: a loadable extension (the duet SQLite extension) loaded
     * on every new connection; NULL for none.  With it, force_rollback uses the
     * extension's test session.
     */
    char *sqlite_extension;

    duet_pool_settings pool;

    /* config.c: whether min/max_connections were given (defaults adapt otherwise). */
    bool min_set, max_set;
};

/* Deep copy; NULL on OOM. */
duet_config *duet__config_copy(const duet_config *cfg);

/* The value of a libpq keyword in cfg->pg_params (borrowed), or NULL. */
const char *duet__config_pg_get(const duet_config *cfg, const char *key);

/* ------------------------------------------------------------------ */
/* Parameters and SQL translation (params.c)                          */
/* ------------------------------------------------------------------ */

typedef enum duet_value_type {
    DUET_V_NULL,
    DUET_V_INT,
    DUET_V_DOUBLE,
    DUET_V_BOOL,
    DUET_V_TEXT,
    DUET_V_BYTES,
} duet_value_type;

/* One bound value. */
typedef struct duet_value {
    char *name; /* without the colon; NULL for a positional value */
    duet_value_type type;
    int64_t i;  /* INT, and BOOL as 0/1 */
    double d;   /* DOUBLE */
    /* TEXT and BYTES: the value; INT, DOUBLE, BOOL: PostgreSQL's text form. */
    char *data;
    size_t len;
} duet_value;

struct duet_params {
    duet_value *vals;
    size_t n, cap;
    size_t npositional; /* values bound with a NULL name */
};

typedef enum duet_sql_style {
    DUET_STYLE_NONE,     /* no placeholder */
    DUET_STYLE_NAMED,    /* :name */
    DUET_STYLE_QMARK,    /* ? */
    DUET_STYLE_NUMBERED, /* $n (or ?n) */
} duet_sql_style;

/* A slot of the native SQL: a name, or the index of a positional value. */
typedef struct duet_sql_slot {
    char *name;
    size_t pos;
} duet_sql_slot;

/*
 * SQL translated into the engine's placeholders: PostgreSQL $1..$n, SQLite
 * ?1..?n.  Slot k of the native SQL takes slots[k]'s value.  The SQL is
 * scanned once: quotes, comments, dollar quotes and :: casts are skipped.
 */
typedef struct duet_sql {
    const char *text; /* what to send: native, or the caller's SQL when unchanged */
    char *native;     /* owned; NULL when the SQL needed no change */
    duet_sql_style style;
    duet_sql_slot *slots;
    size_t nslots;
} duet_sql;

/* DUET_ERR_MISUSE for SQL that mixes styles; *out is zeroed on failure. */
duet_status duet__sql_translate(const char *sql, duet_backend backend, duet_sql *out);

/*
 * Fills vals[0..nslots) from params (may be NULL).  DUET_ERR_MISUSE naming
 * the parameter when a :name is not bound, or positional counts differ.
 */
duet_status duet__sql_bind(const duet_sql *sql, const duet_params *params, const duet_value **vals);

void duet__sql_free(duet_sql *sql);

/* A growable string; oom is set (and further appends ignored) when memory runs out. */
typedef struct duet_buf {
    char *p;
    size_t len, cap;
    bool oom;
} duet_buf;

void duet__buf_add(duet_buf *b, const char *s, size_t n);
void duet__buf_puts(duet_buf *b, const char *s);
void duet__buf_printf(duet_buf *b, const char *fmt, ...) DUET_PRINTF(2, 3);
/* Returns the string (owned by the caller) or NULL after OOM; b is reset. */
char *duet__buf_take(duet_buf *b);

/* ------------------------------------------------------------------ */
/* Results (result.c)                                                 */
/* ------------------------------------------------------------------ */

/* Wraps a PGresult (takes ownership, PQclear at free).  NULL on OOM (res is cleared). */
duet_result *duet__result_from_pg(void *pgresult);
/* Replaces the wrapped PGresult of a one-row iteration result (clears the old one). */
void duet__result_reset_pg(duet_result *r, void *pgresult);

/* A result built value by value (SQLite, fetch_val).  NULL on OOM. */
duet_result *duet__result_new(size_t ncols);
duet_status duet__result_set_colname(duet_result *r, size_t col, const char *name);
/* Starts a new row whose cells are NULL until set. */
duet_status duet__result_add_row(duet_result *r);
/* Drops every row (an iteration result reused for the next row). */
void duet__result_clear_rows(duet_result *r);
/* Set a cell of the last row; text and blob are copied. */
void duet__result_set_int(duet_result *r, size_t col, int64_t v);
void duet__result_set_double(duet_result *r, size_t col, double v);
duet_status duet__result_set_text(duet_result *r, size_t col, const char *text, size_t len);
duet_status duet__result_set_blob(duet_result *r, size_t col, const void *data, size_t len);
/* A one-row one-column copy of src's value at (row, col) (duet_fetch_val). */
duet_status duet__result_extract(const duet_result *src, size_t row, size_t col, duet_result **out);

/* ------------------------------------------------------------------ */
/* Backends (backend_pg.c, backend_sqlite.c)                          */
/* ------------------------------------------------------------------ */

typedef enum duet_txn_state {
    DUET_TXN_IDLE,   /* no transaction open */
    DUET_TXN_ACTIVE, /* in a transaction block */
    DUET_TXN_FAILED, /* in a failed transaction block: only ROLLBACK works */
    DUET_TXN_BROKEN, /* the connection is unusable */
} duet_txn_state;

typedef struct duet_backend_ops duet_backend_ops;

/*
 * One physical connection.  pool.c owns it; the backend owns raw.  Fields
 * after raw are the pool's bookkeeping.
 */
struct duet_conn {
    const duet_backend_ops *ops;
    void *raw;   /* PGconn * or the backend's own struct */
    duet_db *db; /* the database it belongs to */
    struct duet_conn_pool *pool_state; /* owned by pool.c */
};

struct duet_backend_ops {
    const char *name; /* "postgresql", "sqlite" */

    /* Opens a connection; sets the thread's error on failure (no password in it). */
    duet_status (*connect)(const duet_config *cfg, void **raw);
    void (*disconnect)(void *raw);

    /* A real round trip ("SELECT 1" on PostgreSQL). */
    duet_status (*ping)(void *raw);

    duet_txn_state (*txn_state)(void *raw);

    /* Runs SQL text without parameters or rows: BEGIN, SAVEPOINT s1, ROLLBACK... */
    duet_status (*exec_simple)(void *raw, const char *sql);

    /*
     * Interrupts the running statement; safe to call from another thread.
     * False when the request may still arrive later than wait_ms (a server
     * that cannot be reached): the caller must then abort the connection,
     * or the late request would interrupt whatever statement runs then.
     */
    bool (*interrupt)(void *raw, double wait_ms);

    /*
     * Makes a call blocked on the connection return now, from another
     * thread, even when the server no longer answers; the connection may be
     * broken afterwards.  The caller keeps raw alive meanwhile.
     */
    void (*abort)(void *raw);

    /*
     * Runs sql (in the engine's native placeholder syntax, already translated
     * by duet__sql_translate) with the values bound to its slots in order
     * (duet__sql_bind).  out (may be NULL) receives all rows; affected and
     * last_id (may be NULL) as in duet_execute.
     */
    duet_status (*query)(void *raw, const char *sql, const duet_value *const *vals, size_t nvals,
                         duet_result **out, int64_t *affected, int64_t *last_id);

    /*
     * Runs sql once per row of values (rows[i] holds nvals values), all or
     * nothing: in a transaction, or a savepoint when one is already open.
     * PostgreSQL pipelines the rows.  *affected (may be NULL) gets the total.
     */
    duet_status (*query_many)(void *raw, const char *sql, const duet_value *const *const *rows,
                              size_t nrows, size_t nvals, int64_t *affected);

    /* Streaming (see duet_iterate). */
    duet_status (*iter_open)(void *raw, const char *sql, const duet_value *const *vals, size_t nvals,
                             void **cursor);
    duet_status (*iter_next)(void *cursor, const duet_result **row);
    void (*iter_close)(void *cursor);
};

extern const duet_backend_ops duet__pg_ops;
extern const duet_backend_ops duet__sqlite_ops;


/* ------------------------------------------------------------------ */
/* Pool (pool.c)                                                      */
/* ------------------------------------------------------------------ */

/*
 * The connection a call on db runs on: the one pinned to the calling thread
 * (transaction, duet_acquire, force_rollback), or one borrowed from the pool.
 * Every successful enter is paired with a leave, which gets the status of
 * the work so a broken connection is discarded instead of reused.
 */
duet_status duet__conn_enter(duet_db *db, duet_conn **out);
void duet__conn_leave(duet_db *db, duet_conn *conn, duet_status status);

/* The database's parsed configuration (borrowed). */
const duet_config *duet__db_config(const duet_db *db);

/* ---- Between pool.c and txn.c (nothing else needs these) ---------- */

/* Transaction state that travels with a connection (detach/attach moves it). */
typedef struct duet_txn_info {
    int depth;      /* duet_begin nesting; 0 = no transaction */
    bool fr;        /* this is force_rollback's connection */
    bool fr_server; /* force_rollback runs as the extension's test session (duet.test_begin()
                       on PostgreSQL, duet_test_begin() on SQLite) */
    bool fr_stmt;   /* a per-statement savepoint is open (client-side force_rollback) */
} duet_txn_info;

duet_txn_info *duet__conn_txn(duet_conn *conn);

/*
 * Like enter/leave, without force_rollback's per-statement savepoint.  With
 * pin, a thread without a pinned connection gets one pinned; leave unpins it
 * again once neither a transaction nor duet_acquire holds it.
 */
duet_status duet__conn_enter_txn(duet_db *db, bool pin, duet_conn **out);
void duet__conn_leave_txn(duet_db *db, duet_conn *conn, duet_status status);

/* Starts (outermost begin) or stops the transaction_timeout clock. */
void duet__conn_txn_clock(duet_conn *conn, bool running);

/* True once transaction_timeout ended conn's transaction; *after_s = the limit. */
bool duet__conn_expired(duet_conn *conn, double *after_s);

/*
 * Bounds the statements the caller runs on conn between on and off to
 * about 5 s: past that the pool's thread cuts the connection off
 * (the backend's abort op) and they fail with DUET_ERR_CONNECTION.
 */
void duet__conn_watch(duet_conn *conn, bool on);

/* A connection straight from / back to the pool (no pinning). */
duet_status duet__pool_get(duet_db *db, const char *label, duet_conn **out);
void duet__pool_put(duet_db *db, duet_conn *conn, duet_status status);

/* force_rollback's connection: every call on db runs on it while installed.  False
 * (nothing done) when another thread installed one first. */
bool duet__fr_install(duet_db *db, duet_conn *conn);
/* Waits for other threads' calls to end, at most acquire_timeout unless at_close; NULL
 * when off, or with the error set: DUET_ERR_MISUSE when the calling thread itself is
 * inside a call on it, DUET_ERR_TIMEOUT when another thread kept it. */
duet_conn *duet__fr_remove(duet_db *db, bool at_close);
/* txn.c: ends the force_rollback session (duet_force_rollback(db, false), duet_close). */
duet_status duet__fr_switch_off(duet_db *db, bool at_close);
bool duet__fr_active(duet_db *db);
/* While the calling thread (inside an fr call) has a program transaction open. */
void duet__fr_hold(duet_db *db, bool hold);

/* txn.c: wraps one statement in force_rollback mode so an error loses only it. */
duet_status duet__fr_stmt_enter(duet_db *db, duet_conn *conn);
void duet__fr_stmt_leave(duet_db *db, duet_conn *conn, duet_status status);

#endif /* DUET_INTERNAL_H */
