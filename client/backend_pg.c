/*
 * backend_pg.c — the PostgreSQL backend (libpq) behind duet_backend_ops.
 *
 * Statements go through PQexecParams / PQsendQueryParams with the unnamed
 * statement, never SQL PREPARE.  The one exception is execute_many, which
 * prepares a protocol-level named statement once (PQsendPrepare) and binds
 * it per row, unless the URL says pooler=transaction: behind PgBouncer in
 * transaction mode a named statement may not exist on the next server
 * connection, so there every row stays unnamed.  Values are sent as text
 * (bytes as binary), typed int8, float8, bool or bytea when bound as such
 * and "unknown" otherwise so the server infers the type from the context.
 *
 * duet_iterate uses single-row mode (one row in memory at a time);
 * execute_many uses pipeline mode (a sync every BATCH rows, one batch in
 * flight while the previous one is read), so 100,000 inserts cost a few
 * round trips instead of 100,000.  Errors carry the server's message,
 * SQLSTATE, detail and hint.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>

#include <libpq-fe.h>

#include "internal.h"

#define INT8OID 20
#define BOOLOID 16
#define FLOAT8OID 701
#define BYTEAOID 17

/* Rows per pipeline sync in execute_many: bounds what sits unread in the socket. */
#define BATCH 1000
/* Parameters handled without malloc. */
#define SMALL_ARGS 16
/*
 * Named statements execute_many keeps per connection.  libpq 15 cannot
 * close one (no protocol Close) and SQL DEALLOCATE is off limits, so a
 * statement lives as long as its connection: the cache is bounded, and once
 * full, new SQL runs unnamed rather than piling statements on the server.
 */
#define STMT_CACHE 32
/* Below this many rows a new statement saves too little to take a cache slot. */
#define MIN_PREPARED_ROWS 16

/* A named statement execute_many prepared on this connection. */
typedef struct pg_stmt {
    char *sql;
    Oid *types; /* the parameter types it was prepared with: rows must match */
    size_t ntypes;
    char name[32];
} pg_stmt;

/*
 * The key of a cancel request.  libpq 15's PQcancel connects to the server
 * with no time limit (a vanished host holds it for minutes, a stopped
 * postmaster forever), so an interrupt from another thread sends it from a
 * thread of its own, which shares the key: the last user frees it.
 */
typedef struct pg_cancel_key {
    PGcancel *cancel;
    atomic_int refs;
} pg_cancel_key;

/* One cancel request being sent: shared by its thread and the caller waiting for it. */
typedef struct pg_cancel_call {
    pg_cancel_key *key;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool sent; /* (mu) PQcancel returned */
    atomic_int refs;
} pg_cancel_call;

typedef struct pg_conn {
    PGconn *conn;
    pg_cancel_key *cancel; /* for interrupt, from any thread */
    bool unnamed_only; /* pooler=transaction: never a named statement */
    pg_stmt stmts[STMT_CACHE];
    size_t nstmts;
    unsigned long next_stmt; /* names are never reused: a failed one may still exist */
} pg_conn;

typedef struct pg_cursor {
    pg_conn *pc;
    duet_result *row;
    bool done;
    bool in_block; /* a transaction block was open: never cancel, it would abort it */
} pg_cursor;

/* ------------------------------------------------------------------ */
/* Errors                                                             */
/* ------------------------------------------------------------------ */

/* libpq's messages span lines ("...failed: ...\n\tIs the server running..."): make one line. */
static void one_line(char *dst, size_t size, const char *src) {
    size_t o = 0;
    bool space = false;
    for (const char *s = src ? src : ""; *s && o + 1 < size; s++) {
        if (*s == '\n' || *s == '\t' || *s == '\r') {
            space = o > 0;
            continue;
        }
        if (space) dst[o++] = ' ', space = false;
        if (o + 1 < size) dst[o++] = *s;
    }
    dst[o] = '\0';
}

static duet_status conn_error(PGconn *conn, const char *what) {
    char msg[512];
    one_line(msg, sizeof msg, conn ? PQerrorMessage(conn) : "out of memory");
    if (what) {
        char full[600];
        snprintf(full, sizeof full, "%s: %s", what, msg);
        return duet__err_full(DUET_ERR_CONNECTION, "", full, "", "");
    }
    return duet__err_full(DUET_ERR_CONNECTION, "", msg, "", "");
}

/* Maps a failed result: the SQLSTATE decides the status. */
static duet_status result_error(PGconn *conn, const PGresult *res) {
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    /* A lost connection: libpq's message says why better than a stray result does. */
    if (!res || (PQstatus(conn) == CONNECTION_BAD &&
                 (!state || strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)))
        return conn_error(conn, NULL);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char fallback[512];
    if (!msg) {
        one_line(fallback, sizeof fallback, PQresultErrorMessage(res));
        msg = fallback[0] ? fallback : "unexpected result from the server";
    }
    duet_status st = state ? duet__status_from_sqlstate(state) : DUET_ERR_DATABASE;
    return duet__err_full(st, state, msg, PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
                          PQresultErrorField(res, PG_DIAG_MESSAGE_HINT));
}

/* ------------------------------------------------------------------ */
/* Connections                                                        */
/* ------------------------------------------------------------------ */

/* libpq prints NOTICEs to stderr by default; a library must not, so they go to the log. */
static void on_notice(void *arg, const char *message) {
    char line[1024];
    (void)arg;
    one_line(line, sizeof line, message);
    duet__log(DUET_LOG_INFO, "", "server: %s", line);
}

static duet_status pg_connect(const duet_config *cfg, void **raw) {
    size_t n = cfg->pg_nparams;
    const char **keys = calloc(n + 8, sizeof *keys);
    const char **vals = calloc(n + 8, sizeof *vals);
    pg_conn *pc = calloc(1, sizeof *pc);
    if (!keys || !vals || !pc) {
        free(keys), free(vals), free(pc);
        return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    }
    size_t k = 0;
    /*
     * Defaults first: a later keyword wins in PQconnectdbParams.  With the
     * kernel's keepalive timings a silently dead peer is noticed after two
     * hours; these notice it within about a minute.
     */
    keys[k] = "keepalives", vals[k++] = "1";
    keys[k] = "keepalives_idle", vals[k++] = "30";
    keys[k] = "keepalives_interval", vals[k++] = "10";
    keys[k] = "keepalives_count", vals[k++] = "3";
    keys[k] = "fallback_application_name", vals[k++] = "duet";
    for (size_t i = 0; i < n; i++) keys[k] = cfg->pg_params[i].key, vals[k++] = cfg->pg_params[i].value;
    pc->conn = PQconnectdbParams(keys, vals, 0); /* 0: dbname is a name, never a URL */
    free(keys);
    free(vals);
    if (!pc->conn || PQstatus(pc->conn) != CONNECTION_OK) {
        duet_status st = conn_error(pc->conn, "cannot connect to PostgreSQL");
        PQfinish(pc->conn);
        free(pc);
        return st;
    }
    PQsetNoticeProcessor(pc->conn, on_notice, NULL);
    pc->cancel = calloc(1, sizeof *pc->cancel);
    if (pc->cancel) {
        pc->cancel->cancel = PQgetCancel(pc->conn);
        atomic_init(&pc->cancel->refs, 1);
    }
    pc->unnamed_only = cfg->pool.pooler_transaction;
    *raw = pc;
    return DUET_OK;
}

static void cancel_key_unref(pg_cancel_key *k) {
    if (k && atomic_fetch_sub(&k->refs, 1) == 1) {
        PQfreeCancel(k->cancel);
        free(k);
    }
}

static void pg_disconnect(void *raw) {
    pg_conn *pc = raw;
    if (!pc) return;
    for (size_t i = 0; i < pc->nstmts; i++) free(pc->stmts[i].sql), free(pc->stmts[i].types);
    cancel_key_unref(pc->cancel);
    PQfinish(pc->conn);
    free(pc);
}

static duet_txn_state pg_txn_state(void *raw) {
    pg_conn *pc = raw;
    if (!pc || PQstatus(pc->conn) != CONNECTION_OK) return DUET_TXN_BROKEN;
    switch (PQtransactionStatus(pc->conn)) {
    case PQTRANS_IDLE: return DUET_TXN_IDLE;
    case PQTRANS_INTRANS:
    case PQTRANS_ACTIVE: return DUET_TXN_ACTIVE;
    case PQTRANS_INERROR: return DUET_TXN_FAILED;
    default: return DUET_TXN_BROKEN;
    }
}

/* PQcancel is documented safe from any thread (unlike PQrequestCancel). */
static void cancel_now(pg_cancel_key *k) {
    char errbuf[256];
    if (k && k->cancel) PQcancel(k->cancel, errbuf, sizeof errbuf);
}

static void cancel_call_unref(pg_cancel_call *call) {
    if (atomic_fetch_sub(&call->refs, 1) != 1) return;
    cancel_key_unref(call->key);
    pthread_cond_destroy(&call->cv);
    pthread_mutex_destroy(&call->mu);
    free(call);
}

static void *cancel_main(void *arg) {
    pg_cancel_call *call = arg;
    cancel_now(call->key);
    pthread_mutex_lock(&call->mu);
    call->sent = true;
    pthread_cond_signal(&call->cv);
    pthread_mutex_unlock(&call->mu);
    cancel_call_unref(call);
    return NULL;
}

static pg_cancel_call *cancel_call_new(pg_cancel_key *key) {
    pg_cancel_call *call = calloc(1, sizeof *call);
    if (!call) return NULL;
    duet__cond_init_monotonic(&call->cv);
    pthread_mutex_init(&call->mu, NULL);
    call->key = key;
    atomic_fetch_add(&key->refs, 1);
    atomic_init(&call->refs, 1);
    return call;
}

/* Waits up to wait_ms for call's request to be sent. */
static bool cancel_call_wait(pg_cancel_call *call, double wait_ms) {
    struct timespec until = duet__abs_time(duet__now_ms() + wait_ms);
    pthread_mutex_lock(&call->mu);
    while (!call->sent && pthread_cond_timedwait(&call->cv, &call->mu, &until) != ETIMEDOUT)
        continue;
    bool sent = call->sent;
    pthread_mutex_unlock(&call->mu);
    return sent;
}

/*
 * Asks the server to stop the running statement and waits up to wait_ms
 * for the request to be delivered, sending it from a thread of its own
 * (see pg_cancel_key).  False when it is not delivered in time, or no
 * thread could send it: the caller must then cut the connection off, for
 * a request that arrives late cancels whatever statement runs then.
 */
static bool pg_interrupt(void *raw, double wait_ms) {
    pg_conn *pc = raw;
    pg_cancel_call *call = pc && pc->cancel ? cancel_call_new(pc->cancel) : NULL;
    if (!call) return false;
    pthread_attr_t attr;
    pthread_t th;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&call->refs, 1); /* the thread's */
    bool started = pthread_create(&th, &attr, cancel_main, call) == 0;
    pthread_attr_destroy(&attr);
    if (!started) atomic_fetch_sub(&call->refs, 1);
    bool sent = started && cancel_call_wait(call, wait_ms);
    cancel_call_unref(call);
    return sent;
}

/*
 * PQcancel asks the server to stop, which does not help when the server or
 * the path to it is gone (a backend stopped with SIGSTOP, a host that
 * vanished without closing the TCP connection).  Shutting the socket down
 * wakes the thread blocked in libpq's poll(); the read sees end of file and
 * libpq marks the connection bad, so the pool discards it.
 */
static void pg_abort(void *raw) {
    pg_conn *pc = raw;
    int fd = pc && pc->conn ? PQsocket(pc->conn) : -1;
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
}

/* Simple protocol, so "SAVEPOINT a; RELEASE a" is one round trip. */
static duet_status pg_exec_simple(void *raw, const char *sql) {
    pg_conn *pc = raw;
    PGresult *res = PQexec(pc->conn, sql);
    ExecStatusType s = PQresultStatus(res);
    duet_status st = DUET_OK;
    if (!res || (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY))
        st = result_error(pc->conn, res);
    PQclear(res);
    return st;
}

static duet_status pg_ping(void *raw) {
    pg_conn *pc = raw;
    if (!pc || PQstatus(pc->conn) != CONNECTION_OK) return conn_error(pc ? pc->conn : NULL, NULL);
    return pg_exec_simple(raw, "SELECT 1");
}

/* ------------------------------------------------------------------ */
/* Parameters                                                         */
/* ------------------------------------------------------------------ */

typedef struct pg_args {
    Oid *types;
    const char **values;
    int *lengths, *formats;
    Oid s_types[SMALL_ARGS];
    const char *s_values[SMALL_ARGS];
    int s_lengths[SMALL_ARGS], s_formats[SMALL_ARGS];
} pg_args;

static duet_status args_init(pg_args *a, size_t n) {
    if (n <= SMALL_ARGS) {
        a->types = a->s_types, a->values = a->s_values;
        a->lengths = a->s_lengths, a->formats = a->s_formats;
        return DUET_OK;
    }
    a->types = malloc(n * sizeof *a->types);
    a->values = malloc(n * sizeof *a->values);
    a->lengths = malloc(n * sizeof *a->lengths);
    a->formats = malloc(n * sizeof *a->formats);
    if (a->types && a->values && a->lengths && a->formats) return DUET_OK;
    return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
}

static void args_free(pg_args *a) {
    if (a->types == a->s_types) return;
    free(a->types), free(a->values), free(a->lengths), free(a->formats);
}

static void args_fill(pg_args *a, const duet_value *const *vals, size_t n) {
    for (size_t k = 0; k < n; k++) {
        const duet_value *v = vals[k];
        static const Oid oid[] = {[DUET_V_NULL] = 0,       [DUET_V_INT] = INT8OID,
                                  [DUET_V_DOUBLE] = FLOAT8OID, [DUET_V_BOOL] = BOOLOID,
                                  [DUET_V_TEXT] = 0,       [DUET_V_BYTES] = BYTEAOID};
        a->types[k] = oid[v->type];
        a->values[k] = v->type == DUET_V_NULL ? NULL : v->data;
        a->lengths[k] = (int)v->len;
        a->formats[k] = v->type == DUET_V_BYTES; /* bytes go binary: no escaping */
    }
}

/* ------------------------------------------------------------------ */
/* Queries                                                            */
/* ------------------------------------------------------------------ */

/* COPY is not part of this API; leave the connection usable. */
static void end_copy(PGconn *conn, PGresult *res) {
    if (PQresultStatus(res) == PGRES_COPY_IN) {
        PQputCopyEnd(conn, "COPY FROM STDIN is not supported by libduet");
    } else if (PQresultStatus(res) == PGRES_COPY_OUT) {
        char *buf;
        while (PQgetCopyData(conn, &buf, 0) > 0) PQfreemem(buf);
    }
    PGresult *r;
    while ((r = PQgetResult(conn))) PQclear(r);
}

static int64_t parse_i64(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    return *s && !*end ? v : 0;
}

/* Rows changed: PQcmdTuples, except that a SELECT changes none. */
static int64_t changed_rows(PGresult *res) {
    if (strncmp(PQcmdStatus(res), "SELECT", 6) == 0) return 0;
    return parse_i64(PQcmdTuples(res));
}

static duet_status pg_query(void *raw, const char *sql, const duet_value *const *vals, size_t n,
                            duet_result **out, int64_t *affected, int64_t *last_id) {
    pg_conn *pc = raw;
    pg_args a;
    duet_status st = args_init(&a, n);
    if (st) return args_free(&a), st;
    args_fill(&a, vals, n);
    PGresult *res = PQexecParams(pc->conn, sql, (int)n, a.types, a.values, a.lengths, a.formats, 0);
    args_free(&a);
    ExecStatusType s = PQresultStatus(res);
    if (s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH) {
        end_copy(pc->conn, res);
        PQclear(res);
        return duet__err(DUET_ERR_UNSUPPORTED, "COPY is not supported by libduet: use psql");
    }
    if (!res || (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK && s != PGRES_EMPTY_QUERY)) {
        st = result_error(pc->conn, res);
        PQclear(res);
        return st;
    }
    if (affected) *affected = changed_rows(res);
    if (last_id)
        *last_id = PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0)
                       ? parse_i64(PQgetvalue(res, 0, 0))
                       : 0;
    if (!out) {
        PQclear(res);
        return DUET_OK;
    }
    *out = duet__result_from_pg(res);
    return *out ? DUET_OK : duet__err(DUET_ERR_NO_MEMORY, "out of memory");
}

/* ------------------------------------------------------------------ */
/* execute_many: pipeline mode                                        */
/* ------------------------------------------------------------------ */

typedef struct pipeline {
    PGconn *conn;
    size_t results;   /* results read so far: 0 is BEGIN, then the prepare if any, then rows */
    size_t first_row; /* the result index of row 0: 1, or 2 after a prepare */
    size_t syncs;     /* sent and not read yet */
    int64_t affected;
    bool failed;
    bool saved;    /* an error was recorded */
    bool prepared; /* the named statement's Parse succeeded */
} pipeline;

static void record_failure(pipeline *p, PGresult *res) {
    if (p->saved) return;
    result_error(p->conn, res);
    if (p->results >= 1) {
        /* A failed prepare is where row 0's own Parse would have failed. */
        size_t row = p->results < p->first_row ? 0 : p->results - p->first_row;
        char detail[1100];
        snprintf(detail, sizeof detail, "%s%sexecute_many: row %zu failed.", duet_errdetail(),
                 duet_errdetail()[0] ? " " : "", row);
        duet__err_full(duet_errcode(), duet_errsqlstate(), duet_errmsg(), detail, duet_errhint());
    }
    p->saved = true;
}

/* Reads results up to and including the next sync (one must be outstanding). */
static duet_status pipeline_drain(pipeline *p) {
    for (;;) {
        PGresult *res = PQgetResult(p->conn);
        if (!res) {
            if (PQstatus(p->conn) == CONNECTION_BAD) {
                p->failed = true;
                return p->saved ? duet_errcode() : conn_error(p->conn, NULL);
            }
            continue; /* the end of one query's results */
        }
        ExecStatusType s = PQresultStatus(res);
        if (s == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            p->syncs--;
            return p->failed ? duet_errcode() : DUET_OK;
        }
        if (s == PGRES_COMMAND_OK && p->first_row == 2 && p->results == 1) {
            p->prepared = true;
        } else if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            p->affected += changed_rows(res);
        } else if (s != PGRES_PIPELINE_ABORTED) {
            p->failed = true;
            record_failure(p, res);
        }
        p->results++;
        PQclear(res);
    }
}

static duet_status send_sync(pipeline *p) {
    if (!PQpipelineSync(p->conn)) return conn_error(p->conn, NULL);
    p->syncs++;
    return DUET_OK;
}

static duet_status send_simple(pipeline *p, const char *sql) {
    if (!PQsendQueryParams(p->conn, sql, 0, NULL, NULL, NULL, NULL, 0)) return conn_error(p->conn, NULL);
    return DUET_OK;
}

/*
 * Rows whose types differ from the statement's (a NULL where the first row
 * had a number, say) go unnamed: the server then infers their types exactly
 * as it always did, instead of reading them as the first row's types.
 */
static bool stmt_fits(const pg_stmt *stmt, const pg_args *a, size_t nvals) {
    return stmt && stmt->ntypes == nvals &&
           (nvals == 0 || !memcmp(stmt->types, a->types, nvals * sizeof *a->types));
}

static duet_status send_rows(pipeline *p, const char *sql, const pg_stmt *stmt,
                             const duet_value *const *const *rows, size_t nrows, size_t nvals,
                             pg_args *a) {
    duet_status st = DUET_OK;
    for (size_t i = 0; i < nrows && st == DUET_OK; i++) {
        args_fill(a, rows[i], nvals);
        int sent = stmt_fits(stmt, a, nvals)
                       ? PQsendQueryPrepared(p->conn, stmt->name, (int)nvals, a->values,
                                             a->lengths, a->formats, 0)
                       : PQsendQueryParams(p->conn, sql, (int)nvals, a->types, a->values,
                                           a->lengths, a->formats, 0);
        if (!sent) return conn_error(p->conn, NULL);
        if ((i + 1) % BATCH == 0 || i + 1 == nrows) {
            st = send_sync(p);
            /*
             * Read the batch before this one, not this one: the server runs
             * this batch while we read and send, instead of both sides taking
             * turns.  libpq reads while a send would block, so the two
             * batches in flight cannot deadlock.
             */
            if (st == DUET_OK && p->syncs > 1) st = pipeline_drain(p);
        }
    }
    return st;
}

static duet_status pipeline_run(pipeline *p, const char *sql, const pg_stmt *stmt, bool prepare,
                                const duet_value *const *const *rows, size_t nrows, size_t nvals,
                                bool nested) {
    pg_args a;
    duet_status st = args_init(&a, nvals);
    if (st == DUET_OK) st = send_simple(p, nested ? "SAVEPOINT duet_many" : "BEGIN");
    if (st == DUET_OK && prepare &&
        !PQsendPrepare(p->conn, stmt->name, sql, (int)nvals, stmt->types))
        st = conn_error(p->conn, NULL);
    if (st == DUET_OK && nrows == 0) st = send_sync(p);
    if (st == DUET_OK && nrows == 0) st = pipeline_drain(p);
    if (st == DUET_OK) st = send_rows(p, sql, stmt, rows, nrows, nvals, &a);
    if (st == DUET_OK) st = send_simple(p, nested ? "RELEASE SAVEPOINT duet_many" : "COMMIT");
    if (st == DUET_OK) st = send_sync(p);
    while (st == DUET_OK && p->syncs > 0) st = pipeline_drain(p);
    args_free(&a);
    return st;
}

/* One attempt, all or nothing: on failure everything it did is rolled back. */
static duet_status many_once(pg_conn *pc, const char *sql, const pg_stmt *stmt, bool prepare,
                             const duet_value *const *const *rows, size_t nrows, size_t nvals,
                             bool nested, bool *prepared, int64_t *affected) {
    if (!PQenterPipelineMode(pc->conn)) return conn_error(pc->conn, "cannot enter pipeline mode");
    pipeline p = {.conn = pc->conn, .first_row = prepare ? 2 : 1};
    duet_status st = pipeline_run(&p, sql, stmt, prepare, rows, nrows, nvals, nested);
    if (st && PQstatus(pc->conn) == CONNECTION_OK && PQpipelineStatus(pc->conn) == PQ_PIPELINE_ON &&
        send_sync(&p) == DUET_OK) {
        p.saved = true; /* keep the first error: what is still in flight only follows it */
        while (p.syncs > 0 && PQstatus(pc->conn) == CONNECTION_OK) pipeline_drain(&p);
    }
    PQexitPipelineMode(pc->conn);
    if (st && PQstatus(pc->conn) == CONNECTION_OK &&
        PQtransactionStatus(pc->conn) != PQTRANS_IDLE) {
        /* Keep the caller's error; the rollback's own result does not matter. */
        const char *undo = nested ? "ROLLBACK TO SAVEPOINT duet_many; RELEASE SAVEPOINT duet_many"
                                  : "ROLLBACK";
        PQclear(PQexec(pc->conn, undo));
    }
    *prepared = p.prepared;
    if (st == DUET_OK && affected) *affected = p.affected;
    return st;
}

/*
 * The cached statement for sql with the first row's types, or a new one
 * (*prepare set) when the batch is worth it and the cache has room.  NULL:
 * every row goes unnamed.
 */
static pg_stmt *pick_statement(pg_conn *pc, const char *sql, const duet_value *const *row0,
                               size_t nrows, size_t nvals, bool *prepare) {
    *prepare = false;
    if (pc->unnamed_only || nrows == 0) return NULL;
    pg_args a;
    if (args_init(&a, nvals) != DUET_OK) return args_free(&a), NULL; /* unnamed still works */
    args_fill(&a, row0, nvals);
    pg_stmt *found = NULL;
    for (size_t i = 0; i < pc->nstmts && !found; i++)
        if (stmt_fits(&pc->stmts[i], &a, nvals) && strcmp(pc->stmts[i].sql, sql) == 0)
            found = &pc->stmts[i];
    if (!found && nrows >= MIN_PREPARED_ROWS && pc->nstmts < STMT_CACHE) {
        /* Filled in the free slot; it joins the cache only once the server accepts it. */
        pg_stmt *s = &pc->stmts[pc->nstmts];
        s->sql = strdup(sql);
        s->types = malloc((nvals ? nvals : 1) * sizeof *s->types);
        if (s->sql && s->types) {
            memcpy(s->types, a.types, nvals * sizeof *s->types);
            s->ntypes = nvals;
            snprintf(s->name, sizeof s->name, "duet:many:%lu", ++pc->next_stmt);
            found = s, *prepare = true;
        } else {
            free(s->sql), free(s->types);
            s->sql = NULL, s->types = NULL;
        }
    }
    args_free(&a);
    return found;
}

static void stmt_forget(pg_conn *pc, pg_stmt *s) {
    free(s->sql), free(s->types);
    size_t i = (size_t)(s - pc->stmts);
    if (i < pc->nstmts) pc->stmts[i] = pc->stmts[--pc->nstmts];
    pc->stmts[pc->nstmts] = (pg_stmt){0};
}

static duet_status pg_query_many(void *raw, const char *sql, const duet_value *const *const *rows,
                                 size_t nrows, size_t nvals, int64_t *affected) {
    pg_conn *pc = raw;
    PGTransactionStatusType ts = PQtransactionStatus(pc->conn);
    if (ts == PQTRANS_INERROR)
        return duet__err(DUET_ERR_MISUSE,
                         "execute_many: the transaction is aborted; roll it back first");
    bool nested = ts == PQTRANS_INTRANS;
    bool prepare, prepared;
    pg_stmt *stmt = pick_statement(pc, sql, nrows ? rows[0] : NULL, nrows, nvals, &prepare);
    duet_status st = many_once(pc, sql, stmt, prepare, rows, nrows, nvals, nested, &prepared,
                               affected);
    if (prepare && prepared) pc->nstmts++; /* prepared statements outlive a rollback */
    else if (prepare) stmt_forget(pc, stmt);
    /*
     * A cached statement can go stale where an unnamed one cannot: DISCARD
     * ALL or DEALLOCATE ALL drops it (26000), and DDL that changes what it
     * returns makes the server refuse it (0A000, "cached plan must not
     * change result type").  The batch was rolled back as a whole, so run
     * it again unnamed: it then succeeds or fails exactly as it would have
     * without the cache.
     */
    if (st && stmt && !prepare && PQstatus(pc->conn) == CONNECTION_OK &&
        PQtransactionStatus(pc->conn) == ts &&
        (!strcmp(duet_errsqlstate(), "26000") || !strcmp(duet_errsqlstate(), "0A000"))) {
        stmt_forget(pc, stmt);
        st = many_once(pc, sql, NULL, false, rows, nrows, nvals, nested, &prepared, affected);
    }
    return st;
}

/* ------------------------------------------------------------------ */
/* Iteration: single-row mode                                         */
/* ------------------------------------------------------------------ */

static duet_status pg_iter_open(void *raw, const char *sql, const duet_value *const *vals, size_t n,
                                void **cursor) {
    pg_conn *pc = raw;
    pg_cursor *c = calloc(1, sizeof *c);
    if (!c) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    c->pc = pc;
    c->in_block = PQtransactionStatus(pc->conn) != PQTRANS_IDLE;
    pg_args a;
    duet_status st = args_init(&a, n);
    if (st == DUET_OK) {
        args_fill(&a, vals, n);
        if (!PQsendQueryParams(pc->conn, sql, (int)n, a.types, a.values, a.lengths, a.formats, 0))
            st = conn_error(pc->conn, NULL);
        else
            PQsetSingleRowMode(pc->conn);
    }
    args_free(&a);
    if (st) {
        free(c);
        return st;
    }
    *cursor = c;
    return DUET_OK;
}

/* Reads what is left, so the connection is ready for the next statement. */
static void drain(pg_cursor *c) {
    PGresult *res;
    while ((res = PQgetResult(c->pc->conn))) {
        if (PQresultStatus(res) == PGRES_COPY_IN || PQresultStatus(res) == PGRES_COPY_OUT) end_copy(c->pc->conn, res);
        PQclear(res);
    }
    c->done = true;
}

static duet_status pg_iter_next(void *cursor, const duet_result **row) {
    pg_cursor *c = cursor;
    if (c->done) return DUET_DONE;
    PGresult *res = PQgetResult(c->pc->conn);
    ExecStatusType s = PQresultStatus(res);
    if (res && s == PGRES_SINGLE_TUPLE) {
        if (!c->row) {
            c->row = duet__result_from_pg(res);
            if (!c->row) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
        } else {
            duet__result_reset_pg(c->row, res);
        }
        *row = c->row;
        return DUET_ROW;
    }
    duet_status st = DUET_DONE;
    if (!res || (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK && s != PGRES_EMPTY_QUERY))
        st = result_error(c->pc->conn, res);
    PQclear(res);
    if (res) drain(c);
    c->done = true;
    return st;
}

/*
 * Stopping early: outside a transaction block the rest is cancelled rather
 * than read; inside one a cancel would abort the caller's transaction, so
 * the rest is read and dropped.
 */
static void pg_iter_close(void *cursor) {
    pg_cursor *c = cursor;
    if (!c) return;
    if (!c->done) {
        if (!c->in_block) cancel_now(c->pc->cancel); /* the caller's own thread: drain waits for it */
        drain(c);
    }
    duet_result_free(c->row);
    free(c);
}

const duet_backend_ops duet__pg_ops = {
    .name = "postgresql",
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .ping = pg_ping,
    .txn_state = pg_txn_state,
    .exec_simple = pg_exec_simple,
    .interrupt = pg_interrupt,
    .abort = pg_abort,
    .query = pg_query,
    .query_many = pg_query_many,
    .iter_open = pg_iter_open,
    .iter_next = pg_iter_next,
    .iter_close = pg_iter_close,
};
