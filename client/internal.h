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

#include "duet.h"

/* ------------------------------------------------------------------ */
/* Errors (error.c)                                                   */
/* ------------------------------------------------------------------ */

/* Sets the calling thread's error (clearing SQLSTATE, detail and hint); returns code. */
duet_status duet__err(duet_status code, const char *fmt, ...) DUET_PRINTF(2, 3);

/* Sets every field; NULL strings become "".  Returns code. */
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

    duet_pool_settings pool;
};

/* Deep copy; NULL on OOM. */
duet_config *duet__config_copy(const duet_config *cfg);

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

    /* Interrupts the running statement; safe to call from another thread. */
    void (*interrupt)(void *raw);

    /*
     * Runs sql (in the engine's native placeholder syntax, already translated)
     * with params.  out (may be NULL) receives all rows; affected and last_id
     * as in duet_execute.
     */
    duet_status (*query)(void *raw, const char *sql, const duet_params *params, duet_result **out,
                         int64_t *affected, int64_t *last_id);

    /* Streaming (see duet_iterate). */
    duet_status (*iter_open)(void *raw, const char *sql, const duet_params *params, void **cursor);
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

#endif /* DUET_INTERNAL_H */
