/*
** upsert_int.h: what the files of duet_upsert, duet_upsert_many and
** duet_get_or_create share (upsert.c, get_or_create.c, table_cache.c,
** rows.c, statements.c, predict.c).  Private to those files.
*/
#ifndef DUET_UPSERT_INT_H
#define DUET_UPSERT_INT_H

#include "duet_ext.h"

#define MAX_TABLES 16
#define MAX_STMTS 64

/* A unique key usable as an ON CONFLICT target. */
typedef struct Key {
    int n;
    int* col;   /* column indexes, ascending */
    char* name; /* index name; NULL for an INTEGER PRIMARY KEY */
    int primary;
} Key;

/* What duet needs to know about one table. */
typedef struct Table {
    char* name;         /* as the caller gave it: the cache's key */
    char* schema;       /* the database it resolved to: main, temp, an attached one */
    char* tname;        /* the table's name within it */
    int nCol;
    char** col;         /* declared names, in table order */
    unsigned char* gen; /* generated columns cannot be given a value */
    int rowid;          /* 0 for WITHOUT ROWID */
    int nKey;           /* the primary key first, then unique indexes */
    Key* key;
    int id;                /* names the table in statement signatures */
    const char* rowidName; /* "rowid", or another alias a column leaves free */
    char* cookieSql;       /* PRAGMA "schema".schema_version of its database */
    sqlite3_int64 cookie;  /* its value when the description was read */
    /* For writing an upserted row without reading it back (predict_row). */
    unsigned char* aff; /* column affinity, AFF_*, | AFF_NOTNULL */
    int plainCols;      /* in main, not STRICT, no generated column */
    DuetBuf names;      /* '"id":', ',"name":', ... as SELECT * names them */
    int* nameAt;        /* column i is names.z[nameAt[i]..nameAt[i+1]) */
} Table;

/* Column affinities, named by the letters SQLite uses. */
enum { AFF_UNKNOWN = 0, AFF_BLOB = 'A', AFF_TEXT, AFF_NUMERIC, AFF_INTEGER, AFF_REAL };
#define AFF_NOTNULL 0x80

/* A statement and its key: the SQL text for fixed statements, else what
** the statement does (kind, table id, columns; see spec_sig), as ints
** compared with memcmp rather than a string built per call. */
typedef struct Cached {
    char* sig;
    int nSig; /* bytes */
    sqlite3_stmt* stmt;
    /* The result columns as JSON member names, '"id":', ',"name":', ...,
    ** written at the first run: column i is names[nameAt[i]..nameAt[i+1]). */
    char* names;
    int* nameAt;
    int nName;
    int namesAt; /* SQLITE_STMTSTATUS_REPREPARE then: a schema change that
                 ** re-prepares the statement may change its columns */
    /* An upsert's INSERT whose row predict_row() may write without reading
    ** it back: nothing but the statement itself can change the row (no
    ** trigger, no self-referencing foreign key), as checked when it was
    ** prepared.  Any later schema change re-prepares it, which ends that. */
    int predict;
} Cached;

/* The per-connection cache. */
typedef struct Upsert {
    DuetConn* conn;
    Table* tab[MAX_TABLES];
    int nTab;
    Cached st[MAX_STMTS];
    int nSt;
    int last; /* the statement used last, tried first */
    int nextId;
    unsigned victim;
} Upsert;

/* A JSON object read against a table: columns (ascending) and values,
** which point into the argument's text (text[], or SQLite's copy when
** longer) or into own[]. */
#define ROW_INLINE 16 /* columns held without allocating */
typedef struct Row {
    int n, cap;
    int* col;
    DuetJsonValue* val;
    char** own; /* unescaped or minified copies, or NULL */
    int colBuf[ROW_INLINE];
    DuetJsonValue valBuf[ROW_INLINE];
    char* ownBuf[ROW_INLINE];
    char text[512];
} Row;

/* Whether a set of columns holds col; inline, as it is asked for each
** column of each row. */
static inline int set_contains(int n, const int* cols, int col) {
    for (int i = 0; i < n; i++)
        if (cols[i] == col)
            return 1;
    return 0;
}

/* An empty row.  Rather than "Row row = {0}", which zeroes 1.7 KB of
** buffers (some 170 instructions a call) that row_put fills as needed. */
static inline void row_init(Row* row) {
    row->n = row->cap = 0;
    row->col = NULL, row->val = NULL, row->own = NULL;
}

/* One call of a SQL function: where its error goes. */
typedef struct Call {
    Upsert* u;
    sqlite3* db;
    const char* fn; /* "duet_upsert" */
    char* err;
    int rc;
    int cached; /* the table description came from the cache */
    Cached* ran; /* the statement run() ran last */
} Call;

/* The arguments of one call of a SQL function, and the JSON it returns. */
typedef struct FuncCall {
    int argc;
    sqlite3_value** argv;
    char* result; /* NUL-terminated */
} FuncCall;

/* What one statement does; its signature is the key of the cache. */
typedef struct Spec {
    const Table* t;
    const Key* key;
    int nUpd;
    int* upd; /* column_set() */
    int onlyIfChanged;
    int doNothing;     /* ON CONFLICT DO NOTHING */
    int returning;     /* RETURNING * */
    const Row* lookup; /* get_or_create's WHERE columns */
} Spec;

typedef sqlite3_str* (*Builder)(Call* k, const Spec* p, const Row* row);

/* Hidden: these are the extension's own, never exported from duet.so, and
** called directly rather than through the PLT. */
#pragma GCC visibility push(hidden)

/* table_cache.c: errors, the cache, table descriptions, calls. */
int fail(Call* k, int rc, const char* fmt, ...);
int fail_db(Call* k, int rc);
int* column_set(Call* k, const Table* t);
void call_result_error(sqlite3_context* ctx, Call* k);
void cache_clear(Upsert* u);
void upsert_free(void* p);
Cached* stmt_find(Upsert* u, const void* sig, int n);
int stmt_add(Call* k, const void* sig, int n, const char* sql, Cached** pc);
int stmt_get(Call* k, const char* sql, sqlite3_stmt** pStmt);
int column_index_from(const Table* t, const char* name, int n, int start);
int table_current(Call* k, const Table* t, int* current);
int table_get(Call* k, const char* name, Table** pt);
char* set_list(const Table* t, int n, const int* cols);
char* key_list(const Table* t);
int find_column(Call* k, const Table* t, const char* name, int* pcol);
int with_retry(Call* k, int (*fn)(Call*, void*), void* arg);
void call_init(Call* k, sqlite3_context* ctx, const char* fn);
/* Gives out's JSON to fc when rc is SQLITE_OK (failing on a buffer that ran
** out of memory), else frees it; returns the final rc. */
int func_result(Call* k, FuncCall* fc, DuetBuf* out, int rc);
/* A SQL function's body: NULL for a NULL table or row, else work (given a
** FuncCall) retried once on a stale cache, then its JSON or its error. */
void run_function(sqlite3_context* ctx, int argc, sqlite3_value** argv, const char* name,
                  int (*work)(Call*, void*));

/* rows.c: JSON arguments. */
int row_put(Call* k, Row* row, int col, const DuetJsonValue* v);
void row_clear(Row* row);
int json_valid(const char* z, const char** why);
int json_invalid(Call* k, const char* what, const char* why);
int read_object(Call* k, const Table* t, const DuetJsonValue* v, const char* what, Row* row);
int parse_arg(Call* k, sqlite3_value* arg, const char* what, DuetJsonValue* v, char* buf,
              int size);
int read_row(Call* k, const Table* t, sqlite3_value* arg, const char* what, Row* row);
int read_names(Call* k, const Table* t, sqlite3_value* arg, const char* what, int* pn, int* cols);
int no_key_error(Call* k, const Table* t, int n, const int* cols, const char* what);

/* statements.c: writing, caching and running statements. */
int param_of(const Row* row, int col);
int run(Call* k, char kind, Builder build, const Spec* p, const Row* row, DuetBuf* out);
int savepoint_open(Call* k, const char* name, int* opened);
int savepoint_close(Call* k, const char* name, int rc);
sqlite3_str* insert_sql(Call* k, const Spec* p, const Row* row);
sqlite3_str* update_sql(Call* k, const Spec* p, const Row* row);
sqlite3_str* select_key_sql(Call* k, const Spec* p, const Row* row);
sqlite3_str* select_rowid_sql(Call* k, const Spec* p, const Row* row);
sqlite3_str* select_lookup_sql(Call* k, const Spec* p, const Row* row);
int select_by_key(Call* k, Spec* p, const Row* row, DuetBuf* out);
int key_given(const Key* key, const Row* row);

/* predict.c: result rows as JSON, and rows written without a read-back. */
void row_json(DuetBuf* out, Cached* c);
int predictable(Call* k, const Table* t);
int predict_row(const Spec* p, const Row* row, int inserted, DuetBuf* out);

#pragma GCC visibility pop

#endif
