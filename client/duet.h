/*
 * duet.h — libduet: pooled, named database connections for PostgreSQL and SQLite.
 *
 * The header is the manual.  Conventions that hold for every function:
 *
 *   - Functions that can fail return a duet_status: DUET_OK (0) on success,
 *     a DUET_ERR_* code otherwise.  The details of the last failure on the
 *     calling thread (message, SQLSTATE, detail, hint) are read with
 *     duet_errmsg() and friends; they stay valid until the next libduet call
 *     on the same thread.  No function prints, exits, aborts or longjmps.
 *   - Whatever a function returns through an out-pointer is owned by the
 *     caller and freed with the matching _free/_close function, unless the
 *     comment says "borrowed".
 *   - Threads: a duet_db (a named database and its pool) and a duet_registry
 *     are thread-safe; a duet_conn, duet_result, duet_rows or duet_params is
 *     used by one thread at a time.
 *   - Passwords never appear in any message or log line.
 *
 * Quick start:
 *
 *     duet_db *db;
 *     if (duet_open("sqlite:///app.db", &db) != DUET_OK)
 *         fprintf(stderr, "%s\n", duet_errmsg());
 *     duet_params *p = duet_params_new();
 *     duet_bind_text(p, "name", "ada");
 *     duet_result *r;
 *     duet_fetch_all(db, "SELECT id FROM users WHERE name = :name", p, &r);
 *     for (size_t i = 0; i < duet_result_nrows(r); i++) ...
 *     duet_result_free(r);
 *     duet_params_free(p);
 *     duet_close(db);
 */
#ifndef DUET_CLIENT_H
#define DUET_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden: what this header declares is its ABI. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(default)
#endif

#define DUET_VERSION "1.0.0"

#if defined(__GNUC__) || defined(__clang__)
#define DUET_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define DUET_PRINTF(fmt, args)
#endif

/* ------------------------------------------------------------------ */
/* Status codes and errors                                            */
/* ------------------------------------------------------------------ */

typedef enum duet_status {
    DUET_OK = 0,
    DUET_ERR_MISUSE,        /* bad argument or call order (NULL handle, commit without begin) */
    DUET_ERR_CONFIG,        /* malformed URL, unknown option, bad option value */
    DUET_ERR_UNSUPPORTED,   /* backend or feature not supported ("backend not supported: mysql") */
    DUET_ERR_CONNECTION,    /* cannot connect, or connection lost (SQLSTATE class 08, 57P01-57P03) */
    DUET_ERR_TIMEOUT,       /* acquire_timeout, statement/lock timeout, SQLITE_BUSY past busy_timeout */
    DUET_ERR_SYNTAX,        /* SQLSTATE 42601 and class 42 (undefined table/column...), SQLite parse errors */
    DUET_ERR_INTEGRITY,     /* SQLSTATE class 23, SQLITE_CONSTRAINT */
    DUET_ERR_NOT_FOUND,     /* exactly-one fetch found no row; unknown connection name */
    DUET_ERR_MULTIPLE_ROWS, /* exactly-one fetch found more than one row */
    DUET_ERR_SERIALIZATION, /* SQLSTATE 40001 / 40P01: the transaction may be retried */
    DUET_ERR_EXPIRED,       /* the transaction was ended by transaction_timeout */
    DUET_ERR_DATABASE,      /* any other error the engine reported */
    DUET_ERR_NO_MEMORY,
    /* Not errors: what duet_rows_next() returns. */
    DUET_ROW = 100,  /* a row is available */
    DUET_DONE = 101, /* no more rows */
} duet_status;

/* Short lower-case name of a status ("integrity", "not found"). Never NULL. */
const char *duet_status_name(duet_status status);

/* The calling thread's last error.  Strings are "" (never NULL) when absent. */
duet_status duet_errcode(void);
const char *duet_errmsg(void);
const char *duet_errsqlstate(void); /* five characters on PostgreSQL, "" on SQLite */
const char *duet_errdetail(void);
const char *duet_errhint(void);

/* Frees a string returned by libduet (e.g. duet_config_describe). NULL is fine. */
void duet_free(void *ptr);

/* ------------------------------------------------------------------ */
/* Logging                                                            */
/* ------------------------------------------------------------------ */

typedef enum duet_log_level {
    DUET_LOG_DEBUG,   /* every statement, with its duration */
    DUET_LOG_INFO,    /* pool events: connection opened, closed, retired */
    DUET_LOG_WARNING, /* leaked connection, expired transaction, replaced dead connection */
    DUET_LOG_ERROR,
} duet_log_level;

/*
 * A log callback receives the connection name ("default") and one line of text.
 * It may be called from any thread, including the pool's background thread,
 * and must not call back into libduet.
 */
typedef void (*duet_log_fn)(void *arg, duet_log_level level, const char *name, const char *line);

/* Installs the process-wide log callback; NULL turns logging off (the default). */
void duet_set_log(duet_log_fn fn, void *arg, duet_log_level min_level);

/* ------------------------------------------------------------------ */
/* Configuration: URLs and the key/value form                         */
/* ------------------------------------------------------------------ */

/*
 * URL forms:
 *   postgresql://user:pass@host:5432/db?sslmode=require&max_connections=10
 *   postgres://...                 (same)
 *   sqlite:///relative/path.db     sqlite:////absolute/path.db     sqlite:///:memory:
 * Query options are libpq options (PostgreSQL), SQLite pragmas, or pool settings;
 * the README has the full table.  Any other scheme fails with DUET_ERR_UNSUPPORTED
 * ("backend not supported: mysql"); an unknown option fails with DUET_ERR_CONFIG
 * naming it.
 */
typedef struct duet_config duet_config;

/* Parses a URL.  On success *out is a new config, freed with duet_config_free. */
duet_status duet_config_parse(const char *url, duet_config **out);

/* An empty config for the key/value form (databasez's dict). */
duet_config *duet_config_new(void);

/*
 * Sets one key: scheme, host, port, user, password, database, or any option
 * that the URL form accepts.  Unknown keys and bad values fail with DUET_ERR_CONFIG.
 */
duet_status duet_config_set(duet_config *cfg, const char *key, const char *value);

/* The URL with the password replaced by "***"; free with duet_free. NULL on OOM. */
char *duet_config_describe(const duet_config *cfg);

void duet_config_free(duet_config *cfg);

/* ------------------------------------------------------------------ */
/* Databases (a named connection and its pool)                        */
/* ------------------------------------------------------------------ */

typedef enum duet_backend { DUET_POSTGRESQL = 1, DUET_SQLITE = 2 } duet_backend;

typedef struct duet_db duet_db;

/*
 * Opens a database named "default" from a URL, or with a name from a config
 * (the config is copied).  The pool opens min_connections right away; a
 * connection failure there is returned as DUET_ERR_CONNECTION with the
 * server's reason.  Close with duet_close.
 */
duet_status duet_open(const char *url, duet_db **out);
duet_status duet_open_config(const char *name, const duet_config *cfg, duet_db **out);

/*
 * Rolls back any open transaction on every connection, closes them all and
 * frees the handle.  No other thread may use db during or after this call.
 */
void duet_close(duet_db *db);

const char *duet_db_name(const duet_db *db); /* borrowed */
duet_backend duet_db_backend(const duet_db *db);

/* A real round trip on a connection of the pool. */
duet_status duet_ping(duet_db *db);

/* ------------------------------------------------------------------ */
/* Named connections                                                  */
/* ------------------------------------------------------------------ */

typedef struct duet_registry duet_registry;

duet_registry *duet_registry_new(void); /* NULL on OOM */

/*
 * Opens n named databases at once: all of them or, on any failure, none
 * (those already opened are closed again).
 */
duet_status duet_registry_init(duet_registry *reg, const char *const names[], const char *const urls[],
                               size_t n);

/* Adds one at run time (a tenant).  A name already registered is DUET_ERR_MISUSE. */
duet_status duet_register(duet_registry *reg, const char *name, const char *url);
duet_status duet_register_config(duet_registry *reg, const char *name, const duet_config *cfg);

/* Closes and removes one.  An unknown name is DUET_ERR_NOT_FOUND listing the known ones. */
duet_status duet_unregister(duet_registry *reg, const char *name);

/*
 * Looks a database up by name.  *out is borrowed: valid until the name is
 * unregistered or the registry closed.  An unknown name is DUET_ERR_NOT_FOUND
 * and the message lists the known names.
 */
duet_status duet_get(duet_registry *reg, const char *name, duet_db **out);

/* Number of registered names, and the i-th name (borrowed), in registration order. */
size_t duet_registry_count(duet_registry *reg);
const char *duet_registry_name(duet_registry *reg, size_t i);

/* Closes every database (rolling back open transactions) and frees the registry. */
void duet_registry_close(duet_registry *reg);

/* ------------------------------------------------------------------ */
/* Parameters                                                         */
/* ------------------------------------------------------------------ */

/*
 * Parameters are bound by name (":name" in the SQL) or by position (name
 * NULL: "?" or "$1" in the SQL, in the order bound).  A statement uses one
 * style.  ":name" inside quotes, comments, or a "::type" cast is not a
 * parameter.  Values are copied.
 */
typedef struct duet_params duet_params;

duet_params *duet_params_new(void); /* NULL on OOM */
void duet_params_clear(duet_params *p);
void duet_params_free(duet_params *p);

duet_status duet_bind_text(duet_params *p, const char *name, const char *value);
duet_status duet_bind_int64(duet_params *p, const char *name, int64_t value);
duet_status duet_bind_double(duet_params *p, const char *name, double value);
duet_status duet_bind_bool(duet_params *p, const char *name, bool value);
duet_status duet_bind_bytes(duet_params *p, const char *name, const void *data, size_t len);
duet_status duet_bind_null(duet_params *p, const char *name);

/* ------------------------------------------------------------------ */
/* Results                                                            */
/* ------------------------------------------------------------------ */

/* A fully fetched result.  Free with duet_result_free. */
typedef struct duet_result duet_result;

size_t duet_result_nrows(const duet_result *r);
size_t duet_result_ncols(const duet_result *r);
const char *duet_result_colname(const duet_result *r, size_t col); /* borrowed; NULL if out of range */
int duet_result_colindex(const duet_result *r, const char *name);  /* -1 when absent */

bool duet_result_isnull(const duet_result *r, size_t row, size_t col);
/* Text form of the value; NULL for SQL NULL or out of range.  Borrowed from r. */
const char *duet_result_text(const duet_result *r, size_t row, size_t col);
/* Typed getters: DUET_ERR_MISUSE for NULL, out of range or a value that does not convert. */
duet_status duet_result_int64(const duet_result *r, size_t row, size_t col, int64_t *out);
duet_status duet_result_double(const duet_result *r, size_t row, size_t col, double *out);
duet_status duet_result_bool(const duet_result *r, size_t row, size_t col, bool *out);
/* Raw bytes (bytea / BLOB decoded); NULL for SQL NULL.  Borrowed from r. */
const void *duet_result_bytes(const duet_result *r, size_t row, size_t col, size_t *len);

void duet_result_free(duet_result *r);

/* ------------------------------------------------------------------ */
/* Queries                                                            */
/* ------------------------------------------------------------------ */

/*
 * Every query runs on the connection pinned to the calling thread for db
 * (inside a transaction, after duet_acquire, or in force_rollback mode) or
 * else on a connection borrowed from the pool for the duration of the call.
 * params may be NULL.
 */

/*
 * Runs a statement.  *affected (may be NULL) gets the rows changed.
 * *last_id (may be NULL) gets the new row id: sqlite3_last_insert_rowid on
 * SQLite; on PostgreSQL the first column of the first returned row
 * (INSERT ... RETURNING id), else 0.
 */
duet_status duet_execute(duet_db *db, const char *sql, const duet_params *params, int64_t *affected,
                         int64_t *last_id);

/*
 * Runs one statement once per parameter set, in one transaction (a savepoint
 * if one is open): all or nothing.  *affected (may be NULL) gets the total.
 */
duet_status duet_execute_many(duet_db *db, const char *sql, duet_params *const rows[], size_t n,
                              int64_t *affected);

/* All rows. */
duet_status duet_fetch_all(duet_db *db, const char *sql, const duet_params *params, duet_result **out);

/* Exactly one row: DUET_ERR_NOT_FOUND for none, DUET_ERR_MULTIPLE_ROWS for more. */
duet_status duet_fetch_one(duet_db *db, const char *sql, const duet_params *params, duet_result **out);

/*
 * One value: the given column of the first row, as a one-row one-column result
 * (read it at row 0, column 0).  DUET_ERR_NOT_FOUND when there is no row.
 */
duet_status duet_fetch_val(duet_db *db, const char *sql, const duet_params *params, size_t column,
                           duet_result **out);

/*
 * Streaming: rows are read one at a time in constant memory (libpq
 * single-row mode, SQLite stepping).  The connection stays busy until
 * duet_rows_close.
 */
typedef struct duet_rows duet_rows;

duet_status duet_iterate(duet_db *db, const char *sql, const duet_params *params, duet_rows **out);

/*
 * Advances: DUET_ROW with *row set to a one-row result (borrowed, valid until
 * the next call), DUET_DONE at the end, or an error code.
 */
duet_status duet_rows_next(duet_rows *rows, const duet_result **row);

/* Stops early if needed (the rest is discarded) and returns the connection. */
void duet_rows_close(duet_rows *rows);

/* ------------------------------------------------------------------ */
/* Pinned connections                                                 */
/* ------------------------------------------------------------------ */

typedef struct duet_conn duet_conn;

/*
 * Pins one pooled connection to the calling thread for db until the matching
 * duet_release, so that several calls share a session (temp tables, SET).
 * Pins nest with transactions.  label names the caller in leak warnings;
 * the macro passes file:line.
 */
duet_status duet_acquire_labeled(duet_db *db, const char *label);
#define DUET_STR2(x) #x
#define DUET_STR(x) DUET_STR2(x)
#define duet_acquire(db) duet_acquire_labeled((db), __FILE__ ":" DUET_STR(__LINE__))
duet_status duet_release(duet_db *db);

/*
 * Hands the calling thread's pinned connection to another thread: detach
 * unpins it here and returns it; attach pins it on the calling thread.
 */
duet_status duet_detach(duet_db *db, duet_conn **out);
duet_status duet_attach(duet_db *db, duet_conn *conn);

/* ------------------------------------------------------------------ */
/* Transactions                                                       */
/* ------------------------------------------------------------------ */

typedef enum duet_isolation {
    DUET_ISOLATION_DEFAULT = 0,
    DUET_READ_COMMITTED,
    DUET_REPEATABLE_READ,
    DUET_SERIALIZABLE,
} duet_isolation;

#define DUET_TXN_READ_ONLY 0x1u /* PostgreSQL READ ONLY; SQLite: BEGIN DEFERRED */

/*
 * begin pins a connection to the calling thread; nested begins become
 * SAVEPOINTs, and commit/rollback release or roll back to them.  Isolation
 * and flags apply to the outermost begin only (DUET_ERR_MISUSE when nested).
 * On SQLite, a writable transaction is BEGIN IMMEDIATE.  An isolation
 * outside the enum or an unknown flag is DUET_ERR_MISUSE.
 */
duet_status duet_begin(duet_db *db);
duet_status duet_begin_with(duet_db *db, duet_isolation isolation, unsigned flags);
duet_status duet_commit(duet_db *db);
duet_status duet_rollback(duet_db *db);

/* Nesting depth of the calling thread's transaction on db (0 = none). */
int duet_txn_depth(duet_db *db);

/*
 * Scoped transaction: begins, calls fn, commits when fn returns DUET_OK and
 * rolls back otherwise, returning fn's status.  With max_retries > 0, a
 * DUET_ERR_SERIALIZATION from fn or the commit reruns the whole scope up to
 * max_retries more times (outermost transactions only).
 */
typedef duet_status (*duet_atomic_fn)(duet_db *db, void *arg);
duet_status duet_atomic(duet_db *db, duet_atomic_fn fn, void *arg);
duet_status duet_atomic_with(duet_db *db, duet_isolation isolation, unsigned flags, int max_retries,
                             duet_atomic_fn fn, void *arg);

/*
 * force_rollback: while on, every call through db from any thread runs on one
 * pinned connection inside one outer transaction that is rolled back when
 * switched off or at close (a transaction another thread began before it was
 * switched on still ends on its own connection, for real).  Also settable with ?force_rollback=true.
 * Threads take turns on the connection, waiting at most acquire_timeout (then
 * DUET_ERR_TIMEOUT, as is switching off while another thread uses it).
 * The outer transaction is the duet extension's test session when there is
 * one (PostgreSQL: the extension installed; SQLite: loaded with
 * ?extension=PATH), which also discards COMMIT sent as SQL; else savepoints.
 */
duet_status duet_force_rollback(duet_db *db, bool on);

/* ------------------------------------------------------------------ */
/* Pool statistics                                                    */
/* ------------------------------------------------------------------ */

typedef struct duet_pool_stats {
    size_t size;             /* open connections */
    size_t idle;
    size_t in_use;
    size_t waiting;          /* threads blocked in acquire */
    uint64_t acquired;       /* acquisitions since open */
    uint64_t timeouts;       /* acquisitions that hit acquire_timeout */
    uint64_t opened;         /* connections opened since open */
    uint64_t closed;         /* connections closed since open */
    double wait_p50_ms;      /* acquire wait time percentiles */
    double wait_p99_ms;
    double wait_max_ms;
} duet_pool_stats;

/* A consistent snapshot of db's pool. */
void duet_pool_stats_get(duet_db *db, duet_pool_stats *out);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* DUET_CLIENT_H */
