/*
** duet_ext.h: what the files of the duet SQLite extension share.
**
** Each feature file registers its functions on one connection.  Test
** sessions and transaction age both need to see every statement start, but
** SQLite keeps a single trace callback per connection, so conn.c owns the
** per-connection state (DuetConn) and the trace callback, and calls each
** feature from it.
*/
#ifndef DUET_SQLITE_EXT_H
#define DUET_SQLITE_EXT_H

#include <string.h>

#include "sqlite3ext.h"

/* Per-connection state, created by sqlite3_duet_init, freed on close. */
typedef struct DuetConn {
    sqlite3* db;
    int internal; /* >0 while duet runs its own statements (no hooks) */
    /* test_session.c */
    int session;         /* a test session is active */
    int progTxn;         /* the program's BEGIN, mapped onto a savepoint */
    int spillWasOn;      /* PRAGMA cache_spill before the session */
    char journalWas[16]; /* journal_mode replaced by MEMORY for the session, or "" */
    /* txn_age.c */
    double stmtStart;      /* monotonic seconds at the last statement start outside a txn */
    double timeout;        /* duet_txn_timeout() limit in seconds, 0 = off */
    int kill;              /* interrupt the running statement (transaction expired) */
    int rollbackDue;       /* an interrupted read left an expired transaction open */
    unsigned ticks;        /* progress handler calls, to read the clock sparingly */
    char timeoutError[96]; /* why the last statement was interrupted */
    /* upsert.c, get_or_create.c (table_cache.c) */
    void* upsert; /* their cache of statements, finalized on close */
} DuetConn;

/* Transaction-control verbs, recognised from a statement's text. */
enum { DUET_VERB_OTHER, DUET_VERB_BEGIN, DUET_VERB_COMMIT, DUET_VERB_ROLLBACK };

/* json.c: kinds of JSON values, and a reader over one object or array. */
enum {
    DUET_JSON_NULL,
    DUET_JSON_TRUE,
    DUET_JSON_FALSE,
    DUET_JSON_INT,
    DUET_JSON_REAL,
    DUET_JSON_STRING,
    DUET_JSON_ARRAY,
    DUET_JSON_OBJECT
};
typedef struct DuetJsonValue {
    int kind;
    int escaped;   /* a string with backslash escapes */
    const char* z; /* the text: a string's contents, else the value's span */
    int n;
    sqlite3_int64 i; /* DUET_JSON_INT */
    double r;        /* DUET_JSON_REAL */
} DuetJsonValue;
typedef struct DuetJsonIter {
    const char* p;
    int isObject, first, depth;
    const char* why; /* after -1 from duet_json_next: see duet_json_check */
} DuetJsonIter;
int duet_json_kind(const char* z, int* kind);
int duet_json_check(const char* z, int* kind, const char** why);
int duet_json_open(DuetJsonIter* it, const char* z, int* kind);
int duet_json_next(DuetJsonIter* it, DuetJsonValue* key, DuetJsonValue* val);
int duet_json_at_end(const DuetJsonIter* it);
char* duet_json_text(const DuetJsonValue* v);
const char* duet_json_kind_name(int kind);
/* A growable output buffer (sqlite3_malloc'd): cheaper than sqlite3_str
** for results built per call, since it can start at a useful size and be
** handed to sqlite3_result_text without a copy. */
typedef struct DuetBuf {
    char* z;
    int n, cap;
    int oom; /* an allocation failed: the text is incomplete */
} DuetBuf;
int duet_buf_grow(DuetBuf* b, int need);
static inline void duet_buf_append(DuetBuf* b, const char* z, int n) {
    if (b->n + n >= b->cap && duet_buf_grow(b, n))
        return;
    memcpy(b->z + b->n, z, (size_t)n);
    b->n += n;
}
static inline void duet_buf_char(DuetBuf* b, char c) {
    if (b->n + 1 >= b->cap && duet_buf_grow(b, 1))
        return;
    b->z[b->n++] = c;
}
void duet_json_append_string(DuetBuf* b, const char* z, int n);
void duet_json_append_value(DuetBuf* b, sqlite3_value* v);
void duet_json_append_int(DuetBuf* b, sqlite3_int64 x);
void duet_json_append_real(DuetBuf* b, double r);

/* conn.c */
DuetConn* duet_conn_new(sqlite3* db);
void duet_conn_free(void* conn);
int duet_conn_install_trace(DuetConn* c);
int duet_conn_exec(DuetConn* c, const char* sql, char** pzErr);
int duet_conn_in_txn(const DuetConn* c);
int duet_conn_rollback(DuetConn* c);
int duet_sql_verb(const char* sql);
/* The first character of sql past blanks and -- or block comments. */
const char* duet_skip_space(const char* z);
double duet_now(void);

/* Called by conn.c's trace callback at each statement start, in this order. */
void duet_txn_age_on_stmt(DuetConn* c, int verb);
void duet_test_session_on_stmt(DuetConn* c, int verb);
/* Called as the connection closes, before SQLite checks for statements. */
void duet_upsert_on_close(DuetConn* c);

/* One register function per feature; every feature file defines
** SQLITE_EXTENSION_INIT3 to share the API table. */
int duet_test_session_register(sqlite3* db, DuetConn* c);
int duet_txn_age_register(sqlite3* db, DuetConn* c);
int duet_upsert_register(sqlite3* db, DuetConn* c);
int duet_get_or_create_register(sqlite3* db, DuetConn* c);
int duet_plan_register(sqlite3* db, DuetConn* c);

#endif
