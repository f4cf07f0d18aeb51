/*
** upsert.c: upsert and get_or_create over JSON rows.
**
**     SELECT duet_upsert('users', '{"id":1,"name":"ann","email":"a@x"}');
**       -> {"row":{"id":1,"name":"ann","email":"a@x"},"inserted":true}
**     SELECT duet_upsert('users', '{"email":"a@x","name":"bo"}', '["email"]');
**       -> {"row":{"id":1,"name":"bo","email":"a@x"},"inserted":false}
**     SELECT duet_upsert('users', :row, NULL, '["name"]');    -- update only name
**     SELECT duet_upsert('users', :row, NULL, '[]');          -- update nothing
**     SELECT duet_upsert('users', :row, NULL, NULL, 1);       -- only_if_changed
**     SELECT duet_upsert_many('users', '[{"id":1,"name":"a"},{"id":2,"name":"b"}]');
**       -> [{"row":{...},"inserted":false},{"row":{...},"inserted":true}]
**     SELECT key + 1 AS ordinality, value FROM json_each(duet_upsert_many('users', :rows));
**     SELECT duet_get_or_create('users', '{"email":"d@x"}', '{"name":"dee"}');
**       -> {"row":{"id":3,"name":"dee","email":"d@x"},"created":true}
**
** The same functions as duet.upsert, duet.upsert_many and duet.get_or_create
** on PostgreSQL, with JSON text results instead of composite rows.
** duet_upsert(table, row [, conflict_columns [, update_columns [,
** only_if_changed]]]) inserts row (a JSON object of column values) or
** updates the row it conflicts with on conflict_columns (a JSON array; NULL
** or absent: the primary key).  On conflict the columns of update_columns
** that the row gives are set (default: every given column outside the
** conflict target); '[]' updates nothing and returns the existing row;
** only_if_changed leaves a row whose values would not change unwritten.
** "inserted" is false for an update or an untouched row.
** duet_upsert_many() upserts each object of a JSON array in one savepoint,
** all or nothing, and returns the results in input order.
** duet_get_or_create(table, lookup [, defaults]) returns the row matching
** lookup, or inserts lookup plus defaults (they must not overlap).  The
** lookup must give every column of a unique key (not null): the lookup, an
** INSERT ... ON CONFLICT (key) DO NOTHING and the lookup again run as
** separate statements, so that two connections racing on one key end with
** one row, created once, each insert waiting for the other in the busy
** handler.
**
** JSON true/false are stored as 1/0 (SQLite has no boolean), objects and
** arrays as JSON text; BLOB values come back as "\x..." hex strings.
** The table is found as SQLite finds a name ('t': temp, main, then attached
** databases; 'aux.t' when aux is a database) and the statements name both
** parts.  JSON that PostgreSQL's jsonb refuses (\u0000, lone surrogates) is
** refused; integers beyond 64 bits are REALs, as SQLite reads the literal.
** Identifiers are always quoted, values are bound.  The functions are never
** deterministic, and DIRECTONLY: a view or trigger cannot write through them.
**
How "inserted" is known: an upsert that updates leaves
** sqlite3_last_insert_rowid() alone, so it is set to a sentinel before the
** statement (and restored after an update).  The row comes back by rowid or
** by key rather than through RETURNING, which costs four times the upsert
** itself in SQLite 3.40, or, where nothing but the INSERT can have shaped it
** and the input gives all of it, is written from the input without being
** read back (predict_row: a read is a third statement step, a third of the
** cost of a call).  A WITHOUT ROWID table has no rowid: it takes an
** INSERT ... DO NOTHING RETURNING *, then an UPDATE ... RETURNING *.
**
** Cost: the JSON is read in C (json.c); table descriptions and the generated
** statements are cached per connection, statements keyed by what they do
** (table, columns, target: ints compared with memcmp, since building a
** string key per call cost as much as reading the JSON), the result built
** in one buffer handed to SQLite without a copy, and the statements
** finalized when the connection closes
** (through the trace callback of conn.c).  Identifiers are quoted with
** backquotes so that a statement SQLite re-prepares after a schema change
** fails rather than read a dropped column as a string; a call that fails
** with SQLITE_ERROR on cached descriptions empties the cache and is retried
** once, so that the schema change is picked up.  get_or_create, whose lookup
** can succeed on a key that no longer exists, also compares the schema
** version of the table's database with the one its description was read at.
**
** Errors, worded as on PostgreSQL ("duet_<function>: " + message, then the
** hint or detail in parentheses), for example:
**   duet_upsert: relation "nosuch" does not exist
**   duet_upsert: column "nme" of relation "users" does not exist (columns are: id, name, email)
**   duet_upsert: no unique index or constraint on "users" matches the conflict
**     columns (email) (unique keys are: (id), (name))
**   duet_upsert: row must be a JSON object, not array
** Constraint violations keep SQLite's message and extended error code.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "duet_ext.h"
SQLITE_EXTENSION_INIT3

#define MAX_TABLES 16
#define MAX_STMTS 64
#define GOC_ATTEMPTS 3     /* get_or_create retries when the conflicting row vanishes */
#define NO_ROWID INT64_MIN /* last_insert_rowid sentinel: an update leaves it */
#define JSON_SUBTYPE 74    /* 'J', what SQLite's JSON functions mark JSON with */

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
** which point into the argument's text or into own[]. */
#define ROW_INLINE 16 /* columns held without allocating */
typedef struct Row {
    int n, cap;
    int* col;
    DuetJsonValue* val;
    char** own; /* unescaped or minified copies, or NULL */
    int colBuf[ROW_INLINE];
    DuetJsonValue valBuf[ROW_INLINE];
    char* ownBuf[ROW_INLINE];
} Row;

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

/* ---------------------------------------------------------------- errors */

static int fail(Call* k, int rc, const char* fmt, ...) {
    if (k->err == NULL) {
        va_list ap;
        va_start(ap, fmt);
        k->err = sqlite3_vmprintf(fmt, ap);
        va_end(ap);
        k->rc = rc;
    }
    return rc;
}

/* The connection's last error. */
static int fail_db(Call* k, int rc) {
    (void)rc;
    return fail(k, sqlite3_extended_errcode(k->db), "%s", sqlite3_errmsg(k->db));
}

/* An int array for a set of columns of t; freed with sqlite3_free. */
static int* column_set(Call* k, const Table* t) {
    int* set = sqlite3_malloc64(sizeof(int) * (t->nCol + 1));
    if (set == NULL)
        fail(k, SQLITE_NOMEM, "out of memory");
    return set;
}

static void call_result_error(sqlite3_context* ctx, Call* k) {
    char* msg = sqlite3_mprintf("%s: %s", k->fn, k->err ? k->err : "out of memory");
    sqlite3_result_error(ctx, msg ? msg : "out of memory", -1);
    sqlite3_result_error_code(ctx, k->rc ? k->rc : SQLITE_ERROR);
    sqlite3_free(msg);
}

/* ----------------------------------------------------------------- cache */

static void table_free(Table* t) {
    if (t == NULL)
        return;
    for (int i = 0; i < t->nCol; i++)
        sqlite3_free(t->col[i]);
    for (int i = 0; i < t->nKey; i++)
        sqlite3_free(t->key[i].col), sqlite3_free(t->key[i].name);
    sqlite3_free(t->col), sqlite3_free(t->gen), sqlite3_free(t->key);
    sqlite3_free(t->aff), sqlite3_free(t->names.z), sqlite3_free(t->nameAt);
    sqlite3_free(t->cookieSql), sqlite3_free(t->name), sqlite3_free(t->schema);
    sqlite3_free(t->tname), sqlite3_free(t);
}

static void cached_free(Cached* c) {
    sqlite3_finalize(c->stmt);
    sqlite3_free(c->sig);
    sqlite3_free(c->names);
    sqlite3_free(c->nameAt);
    memset(c, 0, sizeof(*c));
}

static void cache_clear(Upsert* u) {
    for (int i = 0; i < u->nTab; i++)
        table_free(u->tab[i]);
    for (int i = 0; i < u->nSt; i++)
        cached_free(&u->st[i]);
    u->nTab = u->nSt = u->last = 0;
}

/* Called by conn.c as the connection closes: unfinalized statements would
** make sqlite3_close() fail. */
void duet_upsert_on_close(DuetConn* c) {
    if (c->upsert)
        cache_clear(c->upsert);
}

static void upsert_free(void* p) {
    Upsert* u = p;
    cache_clear(u);
    sqlite3_free(u);
}

/* The cached statement with key sig (n bytes), or NULL.  The last one used
** is tried first: a loop of upserts into one table hits it every time. */
static Cached* stmt_find(Upsert* u, const void* sig, int n) {
    Cached* c = &u->st[u->last];
    if (u->last < u->nSt && c->nSig == n && memcmp(c->sig, sig, n) == 0)
        return c;
    for (int i = 0; i < u->nSt; i++) {
        if (u->st[i].nSig == n && memcmp(u->st[i].sig, sig, n) == 0) {
            u->last = i;
            return &u->st[i];
        }
    }
    return NULL;
}

/* Prepares sql and caches it under sig (n bytes): reset it after use,
** never finalize. */
static int stmt_add(Call* k, const void* sig, int n, const char* sql, Cached** pc) {
    Upsert* u = k->u;
    sqlite3_stmt* stmt;
    int rc = sqlite3_prepare_v3(k->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK)
        return fail_db(k, rc);
    char* copy = sqlite3_malloc(n);
    if (copy == NULL) {
        sqlite3_finalize(stmt);
        return fail(k, SQLITE_NOMEM, "out of memory");
    }
    memcpy(copy, sig, n);
    int slot = u->nSt;
    if (slot == MAX_STMTS) {
        /* Full: replace one in turn, never the one just used (the caller
        ** may still hold it between two statements). */
        slot = (int)(u->victim++ % MAX_STMTS);
        if (slot == u->last)
            slot = (slot + 1) % MAX_STMTS;
        cached_free(&u->st[slot]);
    } else {
        u->nSt++;
    }
    memset(&u->st[slot], 0, sizeof(Cached));
    u->st[slot].sig = copy;
    u->st[slot].nSig = n;
    u->st[slot].stmt = stmt;
    u->last = slot;
    *pc = &u->st[slot];
    return SQLITE_OK;
}

/* A cached statement whose key is its own text. */
static int stmt_get(Call* k, const char* sql, sqlite3_stmt** pStmt) {
    int n = (int)strlen(sql) + 1;
    Cached* c = stmt_find(k->u, sql, n);
    int rc = c ? SQLITE_OK : stmt_add(k, sql, n, sql, &c);
    *pStmt = rc == SQLITE_OK ? c->stmt : NULL;
    return rc;
}

/* ------------------------------------------------------ table descriptions */

/* The column called name (n bytes, or NUL-terminated when n < 0), or -1,
** looking from column start on: a row's keys usually come in table order,
** so that the caller's guess (the column after the previous key) is right
** at once.  Names are unique regardless of case, so the order of the search
** does not change the answer. */
static int column_index_from(const Table* t, const char* name, int n, int start) {
    if (n < 0)
        n = (int)strlen(name);
    if (start < 0 || start >= t->nCol)
        start = 0;
    for (int j = 0; j < t->nCol; j++) {
        int i = start + j < t->nCol ? start + j : start + j - t->nCol;
        const char* c = t->col[i];
        /* The first letters first, case folded (a superset of what
        ** sqlite3_strnicmp takes as equal): most columns stop here. */
        if (n > 0 && (c[0] | 0x20) != (name[0] | 0x20))
            continue;
        if (sqlite3_strnicmp(c, name, n) == 0 && c[n] == '\0')
            return i;
    }
    return -1;
}

static int column_index(const Table* t, const char* name, int n) {
    return column_index_from(t, name, n, 0);
}

/* The schema version of the table's database: any DDL there changes it. */
static int schema_cookie(Call* k, const Table* t, sqlite3_int64* cookie) {
    sqlite3_stmt* s;
    int rc = stmt_get(k, t->cookieSql, &s);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_step(s);
    *cookie = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? SQLITE_OK : fail_db(k, rc);
}

/* Whether a cached description is still current.  upsert does not need to
** ask: its statements fail to re-prepare when what they rely on is gone.
** get_or_create does, as its lookup can succeed on a key that was dropped. */
static int table_current(Call* k, const Table* t, int* current) {
    sqlite3_int64 cookie;
    int rc = schema_cookie(k, t, &cookie);
    *current = rc == SQLITE_OK && cookie == t->cookie;
    return rc;
}

/* The affinity of a declared column type, by SQLite's rules (section 3.1
** of https://sqlite.org/datatype3.html, as sqlite3AffinityType applies
** them): "INT" anywhere wins; then CHAR, CLOB or TEXT; BLOB (or no type);
** REAL, FLOA or DOUB; else NUMERIC.  Only predict_row() relies on it.  No
** type is BLOB, but a type written as "" is NUMERIC, and the pragma shows
** both as '': unknown, then (AFF_UNKNOWN), and never predicted. */
static int affinity(const char* type) {
    unsigned h = 0;
    int aff = AFF_NUMERIC;
    if (type == NULL || type[0] == '\0')
        return AFF_UNKNOWN;
    for (const char* z = type; *z; z++) {
        unsigned c = (unsigned char)*z;
        h = (h << 8) + (c >= 'A' && c <= 'Z' ? c + 32 : c);
#define W4(a, b, c, d) (((unsigned)(a) << 24) | ((unsigned)(b) << 16) | ((unsigned)(c) << 8) | (d))
        if (h == W4('c', 'h', 'a', 'r') || h == W4('c', 'l', 'o', 'b') || h == W4('t', 'e', 'x', 't'))
            aff = AFF_TEXT;
        else if (h == W4('b', 'l', 'o', 'b') && (aff == AFF_NUMERIC || aff == AFF_REAL))
            aff = AFF_BLOB;
        else if ((h == W4('r', 'e', 'a', 'l') || h == W4('f', 'l', 'o', 'a') ||
                  h == W4('d', 'o', 'u', 'b')) &&
                 aff == AFF_NUMERIC)
            aff = AFF_REAL;
        else if ((h & 0x00ffffff) == W4(0, 'i', 'n', 't'))
            return AFF_INTEGER;
#undef W4
    }
    return aff;
}

/*
** Finds the table a name means, as SQLite would: "schema.table" when the
** part before the first dot names an attached database (else the whole name
** is the table's), and an unqualified name in temp, then main, then the
** attached databases in order.  Statements then name schema and table both,
** so that they write the table the description was read from.
*/
static int resolve_table(Call* k, Table* t) {
    sqlite3_stmt* s;
    const char* dot = strchr(t->name, '.');
    int rc;
    if (dot) {
        rc = stmt_get(k, "SELECT name FROM pragma_database_list WHERE name = ?1 COLLATE NOCASE", &s);
        if (rc != SQLITE_OK)
            return rc;
        sqlite3_bind_text(s, 1, t->name, (int)(dot - t->name), SQLITE_STATIC);
        if (sqlite3_step(s) == SQLITE_ROW) {
            t->schema = sqlite3_mprintf("%s", sqlite3_column_text(s, 0));
            t->tname = sqlite3_mprintf("%s", dot + 1);
            if (t->schema == NULL || t->tname == NULL)
                rc = fail(k, SQLITE_NOMEM, "out of memory");
        }
        sqlite3_reset(s);
        if (rc != SQLITE_OK)
            return rc;
    }
    if (t->tname == NULL && (t->tname = sqlite3_mprintf("%s", t->name)) == NULL)
        return fail(k, SQLITE_NOMEM, "out of memory");
    /* seq 1 is temp, searched first; then main (0) and attached (2...). */
    rc = stmt_get(k,
                  "SELECT l.schema, l.wr, l.type = 'table', l.strict"
                  " FROM pragma_table_list(?1) l, pragma_database_list d"
                  " WHERE d.name = l.schema AND (?2 IS NULL OR l.schema = ?2)"
                  " ORDER BY d.seq <> 1, d.seq LIMIT 1",
                  &s);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(s, 1, t->tname, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, t->schema, -1, SQLITE_STATIC);
    int found = 0, isTable = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        found = 1;
        const char* schema = (const char*)sqlite3_column_text(s, 0);
        t->rowid = sqlite3_column_int(s, 1) == 0;
        isTable = sqlite3_column_int(s, 2);
        /* predict_row() only for main: predictable() looks for triggers
        ** and foreign keys there and in temp. */
        t->plainCols = strcmp(schema, "main") == 0 && sqlite3_column_int(s, 3) == 0;
        if (t->schema == NULL)
            t->schema = sqlite3_mprintf("%s", schema);
        t->cookieSql = sqlite3_mprintf("PRAGMA \"%w\".schema_version", schema);
    }
    sqlite3_reset(s);
    if (!found)
        return fail(k, SQLITE_ERROR, "relation \"%s\" does not exist", t->name);
    if (!isTable)
        return fail(k, SQLITE_ERROR, "\"%s\" is not a table (only tables can be upserted into)",
                    t->name);
    if (t->cookieSql == NULL || t->schema == NULL)
        return fail(k, SQLITE_NOMEM, "out of memory");
    return SQLITE_OK;
}

/* Reads the columns (pragma_table_xinfo) and storage of a table. */
static int load_columns(Call* k, Table* t) {
    sqlite3_stmt* s;
    int rc = resolve_table(k, t);
    if (rc != SQLITE_OK)
        return rc;
    rc = stmt_get(
        k,
        "SELECT name, hidden, type, \"notnull\" FROM pragma_table_xinfo(?1, ?2) WHERE hidden <> 1",
        &s);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(s, 1, t->tname, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, t->schema, -1, SQLITE_STATIC);
    int cap = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (t->nCol == cap) {
            cap = cap ? cap * 2 : 8;
            char** col = sqlite3_realloc64(t->col, sizeof(char*) * cap);
            if (col)
                t->col = col;
            unsigned char* gen = col ? sqlite3_realloc64(t->gen, cap) : NULL;
            if (gen)
                t->gen = gen;
            unsigned char* aff = gen ? sqlite3_realloc64(t->aff, cap) : NULL;
            if (aff)
                t->aff = aff;
            if (!col || !gen || !aff)
                break;
        }
        t->gen[t->nCol] = sqlite3_column_int(s, 1) >= 2;
        t->aff[t->nCol] = (unsigned char)(affinity((const char*)sqlite3_column_text(s, 2)) |
                                          (sqlite3_column_int(s, 3) ? AFF_NOTNULL : 0));
        t->col[t->nCol] = sqlite3_mprintf("%s", sqlite3_column_text(s, 0));
        if (t->col[t->nCol++] == NULL)
            break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_ROW ? fail(k, SQLITE_NOMEM, "out of memory") : fail_db(k, rc);
    if (t->nCol == 0)
        return fail(k, SQLITE_ERROR, "relation \"%s\" does not exist", t->name);
    if ((rc = schema_cookie(k, t, &t->cookie)) != SQLITE_OK)
        return rc;
    /* The name the rowid goes by: a column may hide any one of them. */
    static const char* const names[] = {"rowid", "_rowid_", "oid"};
    t->rowidName = NULL;
    for (int i = 0; i < 3 && t->rowid && t->rowidName == NULL; i++)
        if (column_index(t, names[i], -1) < 0)
            t->rowidName = names[i];
    if (t->rowidName == NULL)
        t->rowid = 0;
    for (int i = 0; i < t->nCol; i++)
        t->plainCols &= !t->gen[i];
    /* Member names for predict_row(): SELECT * names columns as declared. */
    t->nameAt = sqlite3_malloc64(sizeof(int) * (t->nCol + 1));
    for (int i = 0; t->nameAt && i < t->nCol; i++) {
        t->nameAt[i] = t->names.n;
        if (i)
            duet_buf_char(&t->names, ',');
        duet_json_append_string(&t->names, t->col[i], (int)strlen(t->col[i]));
        duet_buf_char(&t->names, ':');
    }
    if (t->nameAt == NULL || t->names.oom)
        return fail(k, SQLITE_NOMEM, "out of memory");
    t->nameAt[t->nCol] = t->names.n;
    return SQLITE_OK;
}

static int add_key(Call* k, Table* t, int n, const int* cols, const char* name, int primary) {
    Key* key = sqlite3_realloc64(t->key, sizeof(Key) * (t->nKey + 1));
    if (key == NULL)
        return fail(k, SQLITE_NOMEM, "out of memory");
    t->key = key;
    key = &t->key[t->nKey];
    key->col = sqlite3_malloc64(sizeof(int) * (n ? n : 1));
    key->name = name ? sqlite3_mprintf("%s", name) : NULL;
    if (key->col == NULL)
        return fail(k, SQLITE_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        int j = i;
        for (; j > 0 && key->col[j - 1] > cols[i]; j--)
            key->col[j] = key->col[j - 1];
        key->col[j] = cols[i];
    }
    key->n = n;
    key->primary = primary;
    t->nKey++;
    return SQLITE_OK;
}

static int load_indexes(Call* k, Table* t, int* cols);

/* The primary key, then each unique, non-partial index on plain columns, in
** creation order: what ON CONFLICT accepts as a target. */
static int load_keys(Call* k, Table* t) {
    sqlite3_stmt* s;
    int n = 0, rc, *cols = column_set(k, t);
    if (cols == NULL)
        return SQLITE_NOMEM;
    rc = stmt_get(k, "SELECT name FROM pragma_table_info(?1, ?2) WHERE pk > 0 ORDER BY pk", &s);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, t->tname, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, t->schema, -1, SQLITE_STATIC);
        while (sqlite3_step(s) == SQLITE_ROW && n < t->nCol)
            cols[n++] = column_index(t, (const char*)sqlite3_column_text(s, 0), -1);
        sqlite3_reset(s);
        if (n > 0)
            rc = add_key(k, t, n, cols, NULL, 1);
    }
    if (rc == SQLITE_OK)
        rc = load_indexes(k, t, cols);
    sqlite3_free(cols);
    return rc;
}

/* Adds the unique indexes, cols being scratch space. */
static int load_indexes(Call* k, Table* t, int* cols) {
    sqlite3_stmt* s;
    int n = 0, rc;
    rc = stmt_get(k,
                  "SELECT il.name, il.origin = 'pk', ii.name FROM pragma_index_list(?1, ?2) il, "
                  "pragma_index_info(il.name, ?2) ii WHERE il.\"unique\" AND NOT il.partial "
                  "ORDER BY il.seq DESC, ii.seqno",
                  &s);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_text(s, 1, t->tname, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, t->schema, -1, SQLITE_STATIC);
    char* index = NULL;
    int pk = 0, usable = 1;
    for (;;) {
        int more = sqlite3_step(s) == SQLITE_ROW;
        const char* name = more ? (const char*)sqlite3_column_text(s, 0) : NULL;
        if (index && (!more || strcmp(name, index) != 0)) {
            /* The primary key's own index is already the first key. */
            if (usable && !pk)
                rc = add_key(k, t, n, cols, index, 0);
            sqlite3_free(index);
            index = NULL;
            if (rc != SQLITE_OK)
                break;
        }
        if (!more)
            break;
        if (index == NULL) {
            index = sqlite3_mprintf("%s", name);
            pk = sqlite3_column_int(s, 1);
            usable = index != NULL;
            n = 0;
        }
        const char* colname = (const char*)sqlite3_column_text(s, 2);
        int ci = colname ? column_index(t, colname, -1) : -1;
        if (ci < 0 || n == t->nCol)
            usable = 0; /* an expression */
        else
            cols[n++] = ci;
    }
    sqlite3_free(index);
    sqlite3_reset(s);
    return rc;
}

/* The description of a table, from the cache or read now.  A schema change
** makes a cached statement fail to re-prepare (names are quoted with
** backquotes, which never fall back to string literals as double quotes
** do), and the call is then retried with an empty cache. */
static int table_get(Call* k, const char* name, Table** pt) {
    Upsert* u = k->u;
    for (int i = 0; i < u->nTab; i++) {
        if (strcmp(u->tab[i]->name, name) == 0) {
            k->cached = 1;
            *pt = u->tab[i];
            return SQLITE_OK;
        }
    }
    Table* t = sqlite3_malloc(sizeof(*t));
    if (t)
        memset(t, 0, sizeof(*t));
    if (t == NULL || (t->name = sqlite3_mprintf("%s", name)) == NULL) {
        sqlite3_free(t);
        return fail(k, SQLITE_NOMEM, "out of memory");
    }
    t->id = ++u->nextId;
    int rc = load_columns(k, t);
    if (rc == SQLITE_OK)
        rc = load_keys(k, t);
    if (rc != SQLITE_OK) {
        table_free(t);
        return rc;
    }
    if (u->nTab == MAX_TABLES) {
        /* Full: start again; statements refer to tables by id. */
        cache_clear(u);
    }
    u->tab[u->nTab++] = t;
    *pt = t;
    return SQLITE_OK;
}

/* "id, name, email": the table's columns, for hints. */
static char* column_list(const Table* t) {
    sqlite3_str* sb = sqlite3_str_new(NULL);
    for (int i = 0; i < t->nCol; i++)
        sqlite3_str_appendf(sb, "%s%s", i ? ", " : "", t->col[i]);
    return sqlite3_str_finish(sb);
}

/* "a, b" for a set of columns. */
static char* set_list(const Table* t, int n, const int* cols) {
    sqlite3_str* sb = sqlite3_str_new(NULL);
    for (int i = 0; i < n; i++)
        sqlite3_str_appendf(sb, "%s%s", i ? ", " : "", t->col[cols[i]]);
    return sqlite3_str_finish(sb);
}

/* "(id), (email)": the table's unique keys. */
static char* key_list(const Table* t) {
    sqlite3_str* sb = sqlite3_str_new(NULL);
    for (int i = 0; i < t->nKey; i++) {
        char* cols = set_list(t, t->key[i].n, t->key[i].col);
        sqlite3_str_appendf(sb, "%s(%s)", i ? ", " : "", cols);
        sqlite3_free(cols);
    }
    return sqlite3_str_finish(sb);
}

/* The column called name, or an error that lists the columns. */
static int find_column(Call* k, const Table* t, const char* name, int* pcol) {
    *pcol = column_index(t, name, -1);
    if (*pcol >= 0)
        return SQLITE_OK;
    char* cols = column_list(t);
    fail(k, SQLITE_ERROR, "column \"%s\" of relation \"%s\" does not exist (columns are: %s)", name,
         t->name, cols);
    sqlite3_free(cols);
    return SQLITE_ERROR;
}

/* ------------------------------------------------------------ JSON input */

/* Doubles a row's room, moving it to the heap. */
static int row_grow(Call* k, Row* row) {
    int cap = 2 * row->cap;
    int* cols = sqlite3_malloc64(sizeof(int) * cap);
    DuetJsonValue* vals = sqlite3_malloc64(sizeof(DuetJsonValue) * cap);
    char** own = sqlite3_malloc64(sizeof(char*) * cap);
    if (!cols || !vals || !own) {
        sqlite3_free(cols), sqlite3_free(vals), sqlite3_free(own);
        return fail(k, SQLITE_NOMEM, "out of memory");
    }
    memcpy(cols, row->col, sizeof(int) * row->n);
    memcpy(vals, row->val, sizeof(DuetJsonValue) * row->n);
    memcpy(own, row->own, sizeof(char*) * row->n);
    if (row->col != row->colBuf)
        sqlite3_free(row->col), sqlite3_free(row->val), sqlite3_free(row->own);
    row->col = cols, row->val = vals, row->own = own;
    row->cap = cap;
    return SQLITE_OK;
}

/* Adds (col, value) to row, keeping columns ascending; a repeated key wins.
** Strings with escapes and nested values get a copy of their text. */
static int row_put(Call* k, Row* row, int col, const DuetJsonValue* v) {
    int i = 0;
    while (i < row->n && row->col[i] < col)
        i++;
    if (row->cap == 0) {
        row->col = row->colBuf, row->val = row->valBuf, row->own = row->ownBuf;
        row->cap = ROW_INLINE;
    }
    if (row->n == row->cap && row_grow(k, row) != SQLITE_OK)
        return SQLITE_NOMEM;
    char* copy = NULL;
    if ((v->kind == DUET_JSON_STRING && v->escaped) || v->kind == DUET_JSON_ARRAY ||
        v->kind == DUET_JSON_OBJECT) {
        if ((copy = duet_json_text(v)) == NULL)
            return fail(k, SQLITE_NOMEM, "out of memory");
    }
    if (i < row->n && row->col[i] == col) {
        sqlite3_free(row->own[i]);
    } else {
        memmove(&row->col[i + 1], &row->col[i], sizeof(int) * (row->n - i));
        memmove(&row->val[i + 1], &row->val[i], sizeof(DuetJsonValue) * (row->n - i));
        memmove(&row->own[i + 1], &row->own[i], sizeof(char*) * (row->n - i));
        row->n++;
    }
    row->col[i] = col;
    row->val[i] = *v;
    row->own[i] = copy;
    return SQLITE_OK;
}

static void row_clear(Row* row) {
    for (int i = 0; i < row->n; i++)
        sqlite3_free(row->own[i]);
    if (row->col != row->colBuf)
        sqlite3_free(row->col), sqlite3_free(row->val), sqlite3_free(row->own);
    row->n = row->cap = 0;
    row->col = NULL, row->val = NULL, row->own = NULL;
}

/* The column a JSON key names, or an error that lists the columns; *pcol
** comes in as the guess less one (-1: none). */
static int key_column(Call* k, const Table* t, const DuetJsonValue* key, int* pcol) {
    if (!key->escaped) {
        *pcol = column_index_from(t, key->z, key->n, *pcol + 1);
        if (*pcol >= 0)
            return SQLITE_OK;
    }
    char* name = key->escaped ? duet_json_text(key) : sqlite3_mprintf("%.*s", key->n, key->z);
    if (name == NULL)
        return fail(k, SQLITE_NOMEM, "out of memory");
    int rc = find_column(k, t, name, pcol);
    sqlite3_free(name);
    return rc;
}

/* Whether z is one JSON document; *why as duet_json_check() sets it. */
static int json_valid(const char* z, const char** why) {
    int kind;
    return duet_json_check(z, &kind, why);
}

/* The error for an argument that is not JSON, or JSON that PostgreSQL's
** jsonb would refuse (why: a \u0000 or a lone surrogate, see json.c). */
static int json_invalid(Call* k, const char* what, const char* why) {
    if (why)
        return fail(k, SQLITE_ERROR, "%s %s", what, why);
    return fail(k, SQLITE_ERROR, "%s is not valid JSON", what);
}

/* Reads the members of an object value v as column values of t. */

static int read_object(Call* k,
                       const Table* t,
                       const DuetJsonValue* v,
                       const char* what,
                       Row* row) {
    const char* why = NULL;
    if (v->kind != DUET_JSON_OBJECT && v->n < 0 && !json_valid(v->z, &why))
        return json_invalid(k, what, why);
    if (v->kind != DUET_JSON_OBJECT)
        return fail(k, SQLITE_MISMATCH, "%s must be a JSON object, not %s", what,
                    duet_json_kind_name(v->kind));
    DuetJsonIter it = {v->z + 1, 1, 1, 1, NULL};
    DuetJsonValue key, val;
    int rc = SQLITE_OK, more;
    /* One pass reads and validates; an error about a column waits until the
    ** whole text is known to be JSON, since malformed JSON comes first. */
    int col = -1; /* the previous key's column, a guess at the next one's */
    while ((more = duet_json_next(&it, &key, &val)) == 1) {
        if (rc != SQLITE_OK)
            continue;
        rc = key_column(k, t, &key, &col);
        if (rc == SQLITE_OK && t->gen[col])
            rc = fail(k, SQLITE_ERROR,
                      "column \"%s\" is a generated column (generated columns cannot be given a "
                      "value)",
                      t->col[col]);
        if (rc == SQLITE_OK)
            rc = row_put(k, row, col, &val);
    }
    if (more < 0 || (v->n < 0 && !duet_json_at_end(&it))) {
        sqlite3_free(k->err);
        k->err = NULL;
        return json_invalid(k, what, more < 0 ? it.why : NULL);
    }
    return rc;
}

/* Parses an argument as one JSON document.  An object or array is only
** located here (n = -1: its text runs to the end of the argument) and is
** validated as it is read, in one pass. */
static int parse_arg(Call* k, sqlite3_value* arg, const char* what, DuetJsonValue* v) {
    const char* z = (const char*)sqlite3_value_text(arg);
    memset(v, 0, sizeof(*v));
    while (z && (*z == ' ' || *z == '\t' || *z == '\n' || *z == '\r'))
        z++;
    if (z && (*z == '{' || *z == '[')) {
        v->kind = *z == '{' ? DUET_JSON_OBJECT : DUET_JSON_ARRAY;
        v->z = z;
        v->n = -1;
        return SQLITE_OK;
    }
    int kind;
    const char* why = NULL;
    if (z == NULL || !duet_json_check(z, &kind, &why))
        return json_invalid(k, what, why);
    v->kind = kind;
    return SQLITE_OK;
}

/* Reads a JSON object argument of column values against table t. */
static int read_row(Call* k, const Table* t, sqlite3_value* arg, const char* what, Row* row) {
    DuetJsonValue v;
    int rc = parse_arg(k, arg, what, &v);
    return rc == SQLITE_OK ? read_object(k, t, &v, what, row) : rc;
}

/* Reads a JSON array of column names into a sorted set; *pn = -1 for NULL. */
static int read_names(Call* k,
                      const Table* t,
                      sqlite3_value* arg,
                      const char* what,
                      int* pn,
                      int* cols) {
    *pn = -1;
    if (arg == NULL || sqlite3_value_type(arg) == SQLITE_NULL)
        return SQLITE_OK;
    DuetJsonValue v, item;
    int rc = parse_arg(k, arg, what, &v);
    if (rc != SQLITE_OK)
        return rc;
    const char* why = NULL;
    if (v.n < 0 && !json_valid(v.z, &why))
        return json_invalid(k, what, why);
    if (v.kind != DUET_JSON_ARRAY)
        return fail(k, SQLITE_MISMATCH, "%s must be a JSON array, not %s", what,
                    duet_json_kind_name(v.kind));
    DuetJsonIter it = {v.z + 1, 0, 1, 1, NULL};
    *pn = 0;
    while (rc == SQLITE_OK && duet_json_next(&it, NULL, &item) == 1) {
        int col = -1, i;
        if (item.kind != DUET_JSON_STRING)
            return fail(k, SQLITE_MISMATCH, "%s must be a JSON array of column names", what);
        if ((rc = key_column(k, t, &item, &col)) != SQLITE_OK)
            break;
        i = 0;
        while (i < *pn && cols[i] < col)
            i++;
        if (i < *pn && cols[i] == col)
            continue;
        memmove(&cols[i + 1], &cols[i], sizeof(int) * (*pn - i));
        cols[i] = col;
        ++*pn;
    }
    return rc;
}

static int set_contains(int n, const int* cols, int col) {
    for (int i = 0; i < n; i++)
        if (cols[i] == col)
            return 1;
    return 0;
}

static int no_key_error(Call* k, const Table* t, int n, const int* cols, const char* what) {
    char* set = set_list(t, n, cols);
    char* keys = key_list(t);
    if (t->nKey == 0)
        fail(k, SQLITE_ERROR,
             "no unique index or constraint on \"%s\" matches the %s columns (%s) "
             "(relation \"%s\" has no unique index or constraint)",
             t->name, what, set, t->name);
    else
        fail(k, SQLITE_ERROR,
             "no unique index or constraint on \"%s\" matches the %s columns (%s) "
             "(unique keys are: %s)",
             t->name, what, set, keys);
    sqlite3_free(set);
    sqlite3_free(keys);
    return SQLITE_ERROR;
}

/* The conflict target: the key with exactly these columns, or the primary key. */
static int conflict_key(Call* k, const Table* t, int n, const int* cols, const Key** pkey) {
    if (n < 0) {
        if (t->nKey > 0 && t->key[0].primary) {
            *pkey = &t->key[0];
            return SQLITE_OK;
        }
        char* keys = key_list(t);
        if (t->nKey > 0)
            fail(k, SQLITE_ERROR,
                 "relation \"%s\" has no primary key (give conflict_columns; unique keys are: %s)",
                 t->name, keys);
        else
            fail(k, SQLITE_ERROR,
                 "relation \"%s\" has no primary key (give conflict_columns naming the columns "
                 "of a unique key)",
                 t->name);
        sqlite3_free(keys);
        return SQLITE_ERROR;
    }
    for (int i = 0; i < t->nKey; i++) {
        if (t->key[i].n == n && memcmp(t->key[i].col, cols, sizeof(int) * n) == 0) {
            *pkey = &t->key[i];
            return SQLITE_OK;
        }
    }
    return no_key_error(k, t, n, cols, "conflict");
}

/* ------------------------------------------------------------ statements */

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

/* Appends an identifier in backquotes: unlike double quotes, a name that no
** longer exists is an error, never a string literal. */
static void append_id(sqlite3_str* sb, const char* name) {
    sqlite3_str_appendchar(sb, 1, '`');
    for (const char* p = name; *p; p++) {
        const char* q = strchr(p, '`');
        if (q == NULL) {
            sqlite3_str_appendall(sb, p);
            break;
        }
        sqlite3_str_append(sb, p, (int)(q - p));
        sqlite3_str_append(sb, "``", 2);
        p = q;
    }
    sqlite3_str_appendchar(sb, 1, '`');
}

/* Appends `schema`.`table`: the table the description was read from, even
** when another of the same name would now come first. */
static void append_table(sqlite3_str* sb, const Table* t) {
    append_id(sb, t->schema);
    sqlite3_str_appendchar(sb, 1, '.');
    append_id(sb, t->tname);
}

/* A statement's key: ints, in a buffer on the stack unless the row is
** wide.  The first int is -1, whose first byte (0xff) never starts SQL
** text, so that these never match a fixed statement's key. */
#define SIG_INLINE 64
typedef struct Sig {
    int buf[SIG_INLINE];
    int* v;
    int n;
} Sig;

static void sig_put(Sig* g, int n, const int* v) {
    g->v[g->n++] = n;
    memcpy(g->v + g->n, v, sizeof(int) * n);
    g->n += n;
}

/* The key of (kind, p, row); NULL when out of memory.  Free with
** sig_free(). */
static const int* spec_sig(Sig* g, char kind, const Spec* p, const Row* row) {
    int size = 10 + row->n + p->nUpd + (p->lookup ? p->lookup->n : 0);
    g->v = size <= SIG_INLINE ? g->buf : sqlite3_malloc64(sizeof(int) * size);
    g->n = 0;
    if (g->v == NULL)
        return NULL;
    int head[7] = {-1,
                   kind,
                   p->t->id,
                   p->key ? (int)(p->key - p->t->key) + 1 : 0,
                   p->onlyIfChanged,
                   p->doNothing,
                   p->returning};
    memcpy(g->v, head, sizeof(head));
    g->n = 7;
    sig_put(g, row->n, row->col);
    sig_put(g, p->nUpd, p->upd);
    if (p->lookup)
        sig_put(g, p->lookup->n, p->lookup->col);
    return g->v;
}

static void sig_free(Sig* g) {
    if (g->v != g->buf)
        sqlite3_free(g->v);
}

/* The parameter number of column col in row, 0 if the row does not give it. */
static int param_of(const Row* row, int col) {
    for (int i = 0; i < row->n; i++)
        if (row->col[i] == col)
            return i + 1;
    return 0;
}

/* Appends " WHERE a IS ?1 AND b IS ?2" over the key's columns. */
static void append_key_where(sqlite3_str* sb, const Table* t, const Key* key, const Row* row) {
    for (int i = 0; i < key->n; i++) {
        sqlite3_str_appendall(sb, i ? " AND " : " WHERE ");
        append_id(sb, t->col[key->col[i]]);
        sqlite3_str_appendf(sb, " IS ?%d", param_of(row, key->col[i]));
    }
}

/* Binds the row's values as ?1..?n, as far as the statement has parameters. */
static void bind_row(sqlite3_stmt* s, const Row* row) {
    int n = sqlite3_bind_parameter_count(s);
    for (int i = 0; i < row->n && i < n; i++) {
        const DuetJsonValue* v = &row->val[i];
        if (row->own[i])
            sqlite3_bind_text(s, i + 1, row->own[i], -1, SQLITE_STATIC);
        else if (v->kind == DUET_JSON_STRING)
            sqlite3_bind_text(s, i + 1, v->z, v->n, SQLITE_STATIC);
        else if (v->kind == DUET_JSON_INT)
            sqlite3_bind_int64(s, i + 1, v->i);
        else if (v->kind == DUET_JSON_REAL)
            sqlite3_bind_double(s, i + 1, v->r);
        else if (v->kind == DUET_JSON_TRUE || v->kind == DUET_JSON_FALSE)
            sqlite3_bind_int(s, i + 1, v->kind == DUET_JSON_TRUE);
        else
            sqlite3_bind_null(s, i + 1);
    }
}

/* Writes the JSON member names of a cached statement's result columns;
** nonzero when out of memory. */
static int result_names(Cached* c) {
    int n = sqlite3_column_count(c->stmt);
    DuetBuf b = {0};
    int* at = sqlite3_malloc64(sizeof(int) * (n + 1));
    for (int i = 0; at && i < n; i++) {
        const char* name = sqlite3_column_name(c->stmt, i);
        at[i] = b.n;
        if (i)
            duet_buf_char(&b, ',');
        duet_json_append_string(&b, name ? name : "", name ? (int)strlen(name) : 0);
        duet_buf_char(&b, ':');
    }
    if (at == NULL || b.oom || (n == 0 && duet_buf_grow(&b, 1))) {
        sqlite3_free(at), sqlite3_free(b.z);
        return 1;
    }
    at[n] = b.n;
    sqlite3_free(c->names);
    sqlite3_free(c->nameAt);
    c->namesAt = sqlite3_stmt_status(c->stmt, SQLITE_STMTSTATUS_REPREPARE, 0);
    c->names = b.z;
    c->nameAt = at;
    c->nName = n;
    return 0;
}

/* Appends the current row of c's statement to out as a JSON object. */
static void row_json(DuetBuf* out, Cached* c) {
    if ((c->names == NULL ||
         c->namesAt != sqlite3_stmt_status(c->stmt, SQLITE_STMTSTATUS_REPREPARE, 0)) &&
        result_names(c)) {
        out->oom = 1;
        return;
    }
    duet_buf_char(out, '{');
    for (int i = 0; i < c->nName; i++) {
        duet_buf_append(out, c->names + c->nameAt[i], c->nameAt[i + 1] - c->nameAt[i]);
        duet_json_append_value(out, sqlite3_column_value(c->stmt, i));
    }
    duet_buf_char(out, '}');
}

static int predictable(Call* k, const Table* t);

typedef sqlite3_str* (*Builder)(Call* k, const Spec* p, const Row* row);

/* Runs the statement that build() writes for (p, row), cached by signature,
** to completion.  Returns SQLITE_ROW when it gave rows, the first one being
** appended to out (NULL when no row is wanted), or SQLITE_DONE. */
static int run(Call* k, char kind, Builder build, const Spec* p, const Row* row, DuetBuf* out) {
    Sig g;
    const int* sig = spec_sig(&g, kind, p, row);
    int nSig = (int)sizeof(int) * g.n;
    Cached* c = sig ? stmt_find(k->u, sig, nSig) : NULL;
    int rc = sig ? SQLITE_OK : fail(k, SQLITE_NOMEM, "out of memory");
    if (c == NULL && rc == SQLITE_OK) {
        /* Checked before the statement is added: the check runs statements
        ** of its own, which must not push the new one out of the cache. */
        int predict = kind == 'I' && !p->returning && !p->doNothing && predictable(k, p->t);
        char* sql = sqlite3_str_finish(build(k, p, row));
        rc = sql ? stmt_add(k, sig, nSig, sql, &c) : fail(k, SQLITE_NOMEM, "out of memory");
        sqlite3_free(sql);
        if (rc == SQLITE_OK)
            c->predict = predict;
    }
    sig_free(&g);
    if (rc != SQLITE_OK)
        return rc;
    k->ran = c;
    sqlite3_stmt* s = c->stmt;
    /* Schema changes on this connection (DDL, ATTACH) expire every statement;
    ** one that re-prepares would still write the table it names, but a
    ** cached description may now be stale, or the name may mean another
    ** table (a temp table created since hides a main one, and temp is this
    ** connection's alone, so only its own DDL can do that): the caller
    ** (with_retry) empties the cache and starts the call again. */
    if (k->cached && sqlite3_expired(s))
        return fail(k, SQLITE_SCHEMA, "the schema changed");
    bind_row(s, row);
    k->u->conn->internal++;
    int got = 0;
    /* Run to completion, so that the statement's write is finished. */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (got++ == 0 && out)
            row_json(out, c);
    if (rc != SQLITE_DONE)
        fail_db(k, rc);
    else if (out && out->oom)
        rc = fail(k, SQLITE_NOMEM, "out of memory");
    else if (got)
        rc = SQLITE_ROW;
    sqlite3_reset(s);
    k->u->conn->internal--;
    return rc;
}

/* Runs a fixed statement (a savepoint) through the cache. */
static int exec_cached(Call* k, const char* sql) {
    sqlite3_stmt* s;
    int rc = stmt_get(k, sql, &s);
    if (rc != SQLITE_OK)
        return rc;
    k->u->conn->internal++;
    rc = sqlite3_step(s);
    k->u->conn->internal--;
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? SQLITE_OK : fail_db(k, rc);
}

/* Whether a statement that writes is running on the connection (the one
** that called the function, typically). */
static int write_in_progress(sqlite3* db) {
    for (sqlite3_stmt* s = sqlite3_next_stmt(db, NULL); s; s = sqlite3_next_stmt(db, s))
        if (sqlite3_stmt_busy(s) && !sqlite3_stmt_readonly(s))
            return 1;
    return 0;
}

/*
** Opens savepoint name; *opened tells whether it did.  SQLite opens none
** while a statement that writes is running ("cannot open savepoint - SQL
** statements in progress"), as when the function is called from
** INSERT ... SELECT duet_upsert(...): that is no error, *opened is 0 and the
** caller does without (the statement is tried first, so that the usual
** case costs no walk over the connection's statements).
*/
static int savepoint_open(Call* k, const char* name, int* opened) {
    char sql[64];
    sqlite3_stmt* s;
    *opened = 0;
    sqlite3_snprintf(sizeof(sql), sql, "SAVEPOINT %s", name);
    int rc = stmt_get(k, sql, &s);
    if (rc != SQLITE_OK)
        return rc;
    k->u->conn->internal++;
    rc = sqlite3_step(s);
    k->u->conn->internal--;
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) {
        *opened = 1;
        return SQLITE_OK;
    }
    return write_in_progress(k->db) ? SQLITE_OK : fail_db(k, rc);
}

/* Ends savepoint name: released when rc is SQLITE_OK, else rolled back.  A
** RELEASE that fails (a commit, in autocommit mode, that cannot get its
** lock) would leave the savepoint, and so a transaction, open: it is then
** rolled back too, and its error returned. */
static int savepoint_close(Call* k, const char* name, int rc) {
    char release[64], rollback[64];
    sqlite3_snprintf(sizeof(release), release, "RELEASE %s", name);
    sqlite3_snprintf(sizeof(rollback), rollback, "ROLLBACK TO %s", name);
    if (rc == SQLITE_OK && (rc = exec_cached(k, release)) == SQLITE_OK)
        return SQLITE_OK;
    exec_cached(k, rollback);
    exec_cached(k, release);
    return rc;
}

/* INSERT INTO t (cols) VALUES (?1, ...) ON CONFLICT (key) DO ... */
static sqlite3_str* insert_sql(Call* k, const Spec* p, const Row* row) {
    const Table* t = p->t;
    sqlite3_str* sb = sqlite3_str_new(k->db);
    sqlite3_str_appendall(sb, "INSERT INTO ");
    append_table(sb, t);
    for (int i = 0; i < row->n; i++) {
        sqlite3_str_appendall(sb, i ? ", " : " (");
        append_id(sb, t->col[row->col[i]]);
    }
    sqlite3_str_appendall(sb, ") VALUES (");
    for (int i = 0; i < row->n; i++)
        sqlite3_str_appendf(sb, "%s?%d", i ? ", " : "", i + 1);
    sqlite3_str_appendall(sb, ") ON CONFLICT (");
    for (int i = 0; i < p->key->n; i++) {
        if (i)
            sqlite3_str_appendall(sb, ", ");
        append_id(sb, t->col[p->key->col[i]]);
    }
    if (p->doNothing || p->nUpd == 0) {
        sqlite3_str_appendall(sb, ") DO NOTHING");
    } else {
        sqlite3_str_appendall(sb, ") DO UPDATE SET ");
        for (int i = 0; i < p->nUpd; i++) {
            if (i)
                sqlite3_str_appendall(sb, ", ");
            append_id(sb, t->col[p->upd[i]]);
            sqlite3_str_appendall(sb, " = excluded.");
            append_id(sb, t->col[p->upd[i]]);
        }
        for (int i = 0; p->onlyIfChanged && i < p->nUpd; i++) {
            sqlite3_str_appendall(sb, i ? " OR " : " WHERE ");
            append_id(sb, t->col[p->upd[i]]);
            sqlite3_str_appendall(sb, " IS NOT excluded.");
            append_id(sb, t->col[p->upd[i]]);
        }
    }
    if (p->returning)
        sqlite3_str_appendall(sb, " RETURNING *");
    return sb;
}

/* UPDATE t SET cols = ?n WHERE key [AND changed] RETURNING * */
static sqlite3_str* update_sql(Call* k, const Spec* p, const Row* row) {
    const Table* t = p->t;
    sqlite3_str* sb = sqlite3_str_new(k->db);
    sqlite3_str_appendall(sb, "UPDATE ");
    append_table(sb, t);
    for (int i = 0; i < p->nUpd; i++) {
        sqlite3_str_appendall(sb, i ? ", " : " SET ");
        append_id(sb, t->col[p->upd[i]]);
        sqlite3_str_appendf(sb, " = ?%d", param_of(row, p->upd[i]));
    }
    append_key_where(sb, t, p->key, row);
    for (int i = 0; p->onlyIfChanged && i < p->nUpd; i++) {
        sqlite3_str_appendall(sb, i ? " OR " : " AND (");
        append_id(sb, t->col[p->upd[i]]);
        sqlite3_str_appendf(sb, " IS NOT ?%d", param_of(row, p->upd[i]));
    }
    if (p->onlyIfChanged && p->nUpd)
        sqlite3_str_appendall(sb, ")");
    sqlite3_str_appendall(sb, " RETURNING *");
    return sb;
}

/* SELECT * FROM t WHERE key = the row's key values */
static sqlite3_str* select_key_sql(Call* k, const Spec* p, const Row* row) {
    sqlite3_str* sb = sqlite3_str_new(k->db);
    sqlite3_str_appendall(sb, "SELECT * FROM ");
    append_table(sb, p->t);
    append_key_where(sb, p->t, p->key, row);
    return sb;
}

/* SELECT * FROM t WHERE rowid = last_insert_rowid() */
static sqlite3_str* select_rowid_sql(Call* k, const Spec* p, const Row* row) {
    (void)row;
    sqlite3_str* sb = sqlite3_str_new(k->db);
    sqlite3_str_appendall(sb, "SELECT * FROM ");
    append_table(sb, p->t);
    sqlite3_str_appendf(sb, " WHERE %s = last_insert_rowid()", p->t->rowidName);
    return sb;
}

/* SELECT * FROM t WHERE lookup LIMIT 1, parameters numbered as in row */
static sqlite3_str* select_lookup_sql(Call* k, const Spec* p, const Row* row) {
    sqlite3_str* sb = sqlite3_str_new(k->db);
    sqlite3_str_appendall(sb, "SELECT * FROM ");
    append_table(sb, p->t);
    for (int i = 0; i < p->lookup->n; i++) {
        sqlite3_str_appendall(sb, i ? " AND " : " WHERE ");
        append_id(sb, p->t->col[p->lookup->col[i]]);
        sqlite3_str_appendf(sb, " IS ?%d", param_of(row, p->lookup->col[i]));
    }
    sqlite3_str_appendall(sb, " LIMIT 1");
    return sb;
}

/* The row that an insert conflicted with, by its key. */
static int select_by_key(Call* k, Spec* p, const Row* row, DuetBuf* out) {
    int rc = run(k, 'K', select_key_sql, p, row, out);
    if (rc == SQLITE_DONE)
        rc = fail(k, SQLITE_ERROR, "could not find the row of \"%s\" that the row conflicts with",
                  p->t->name);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static int key_given(const Key* key, const Row* row) {
    for (int i = 0; i < key->n; i++)
        if (!param_of(row, key->col[i]))
            return 0;
    return 1;
}

/* One integer of SQL (a count or a cookie), or -1 on any error. */
static sqlite3_int64 query_int(Call* k, const char* sql, const char* arg) {
    sqlite3_stmt* s;
    sqlite3_int64 v = -1;
    if (sql == NULL || sqlite3_prepare_v2(k->db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    if (arg)
        sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/*
** Whether the row an upsert into t writes is exactly the one predict_row()
** can tell from its input, checked as a new INSERT is prepared: t's
** description is current (schema version unchanged; temp, whose changes do
** not move it, holds no table of that name that would now hide t), and
** nothing but the INSERT can change the row: no trigger in main or temp
** (not only t's: a trigger elsewhere, fired through a cascade, could write
** t) and no foreign key of t onto itself (a cascade could reach the row).
** Any error just says no.  Runs once per new INSERT statement, not per call.
*/
static int predictable(Call* k, const Table* t) {
    if (!t->rowid || !t->plainCols)
        return 0;
    if (query_int(k, t->cookieSql, NULL) != t->cookie)
        return 0;
    return query_int(k,
                     "SELECT (SELECT count(*) FROM main.sqlite_master WHERE type = 'trigger')"
                     " + (SELECT count(*) FROM temp.sqlite_master WHERE type = 'trigger'"
                     " OR name = ?1 COLLATE NOCASE)"
                     " + (SELECT count(*) FROM pragma_foreign_key_list(?1, 'main')"
                     " WHERE \"table\" = ?1 COLLATE NOCASE)",
                     t->tname) == 0;
}

/* What SQLite makes of a REAL given to a column of INTEGER, NUMERIC or
** REAL affinity (sqlite3VdbeIntegerAffinity): an integer when the value is
** one, short of the int64 extremes. */
static int real_is_int(double r, sqlite3_int64* ix) {
    if (!(r > -9223372036854775808.0 && r < 9223372036854775808.0))
        return 0;
    *ix = (sqlite3_int64)r;
    return r == (double)*ix && *ix > INT64_MIN && *ix < INT64_MAX;
}

/* The value SQLite stores for v in a column of affinity aff, appended to
** out as JSON, as duet_json_append_value() would write it read back; 0
** (and nothing appended) when that takes SQLite's text-to-number rules or
** number-to-text formatting, which are left to SQLite. */
static int predict_value(DuetBuf* out, int aff, const DuetJsonValue* v, const char* own) {
    sqlite3_int64 x;
    if (aff == AFF_UNKNOWN)
        return 0;
    switch (v->kind) {
        case DUET_JSON_NULL:
            duet_buf_append(out, "null", 4);
            return 1;
        case DUET_JSON_TRUE:
        case DUET_JSON_FALSE:
        case DUET_JSON_INT:
            x = v->kind == DUET_JSON_INT ? v->i : v->kind == DUET_JSON_TRUE;
            if (aff == AFF_TEXT)
                return 0;
            if (aff == AFF_REAL)
                duet_json_append_real(out, (double)x);
            else
                duet_json_append_int(out, x);
            return 1;
        case DUET_JSON_REAL:
            if (aff == AFF_TEXT)
                return 0;
            if (aff != AFF_BLOB && real_is_int(v->r, &x)) {
                if (aff == AFF_REAL)
                    duet_json_append_real(out, (double)x); /* -0.0 comes back 0.0 */
                else
                    duet_json_append_int(out, x);
            } else {
                duet_json_append_real(out, v->r);
            }
            return 1;
        case DUET_JSON_STRING:
            /* Text a numeric affinity may turn into a number. */
            if (aff != AFF_TEXT && aff != AFF_BLOB)
                return 0;
            /* fall through */
        default:
            /* Objects and arrays are bound as their text, which starts with
            ** { or [ and so stays text in any column. */
            if (own)
                duet_json_append_string(out, own, (int)strlen(own));
            else
                duet_json_append_string(out, v->z, v->n);
            return 1;
    }
}

/*
** Writes the row an upsert has just written, {"id":..,...}, from its input
** instead of reading it back (a second statement, most of the cost of a
** call beyond the INSERT itself): when the row gives every column, and on
** an update sets every column outside the conflict key, whose values then
** are exactly the ones given (integers in columns of integer or numeric
** affinity).  Returns 0, with out as it was, where that does not hold.
*/
static int predict_row(const Spec* p, const Row* row, int inserted, DuetBuf* out) {
    const Table* t = p->t;
    if (row->n != t->nCol)
        return 0;
    if (!inserted) {
        /* Updated, or left alone by only_if_changed: only the former is
        ** certain, and only when no column keeps its old value. */
        if (p->onlyIfChanged)
            return 0;
        for (int i = 0; i < t->nCol; i++)
            if (!set_contains(p->key->n, p->key->col, i) && !set_contains(p->nUpd, p->upd, i))
                return 0;
        for (int i = 0; i < p->key->n; i++) {
            const DuetJsonValue* v = &row->val[p->key->col[i]];
            int aff = t->aff[p->key->col[i]] & ~AFF_NOTNULL;
            if ((aff != AFF_INTEGER && aff != AFF_NUMERIC) || v->kind != DUET_JSON_INT ||
                v->i == INT64_MIN)
                return 0;
        }
    }
    int mark = out->n;
    duet_buf_char(out, '{');
    for (int i = 0; i < t->nCol; i++) {
        /* Row columns are ascending and all given: row->col[i] == i. */
        const DuetJsonValue* v = &row->val[i];
        int aff = t->aff[i];
        /* NOT NULL ... ON CONFLICT REPLACE stores the default instead; an
        ** INTEGER PRIMARY KEY makes up a rowid. */
        if (v->kind == DUET_JSON_NULL &&
            ((aff & AFF_NOTNULL) || (t->nKey > 0 && t->key[0].primary &&
                                     set_contains(t->key[0].n, t->key[0].col, i)))) {
            out->n = mark;
            return 0;
        }
        duet_buf_append(out, t->names.z + t->nameAt[i], t->nameAt[i + 1] - t->nameAt[i]);
        if (!predict_value(out, aff & ~AFF_NOTNULL, v, row->own[i])) {
            out->n = mark;
            return 0;
        }
    }
    duet_buf_char(out, '}');
    return 1;
}

/*
** Rowid tables, key given: INSERT ... ON CONFLICT without RETURNING, then the
** row read back by rowid (inserted) or by key (updated or untouched).  In
** SQLite 3.40 RETURNING costs four times the upsert itself (its rows go
** through a temporary table); a read by rowid costs a fraction.  Outside a
** transaction a savepoint keeps the two statements together; within a
** statement that writes (INSERT ... SELECT duet_upsert(...)), where SQLite
** opens none, that statement's own transaction does, and an error here
** fails it.
*/
static int upsert_rowid(Call* k, Spec* p, const Row* row, DuetBuf* out, int* inserted) {
    int own = sqlite3_get_autocommit(k->db);
    int rc = own ? savepoint_open(k, "duet_upsert", &own) : SQLITE_OK;
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_int64 before = sqlite3_last_insert_rowid(k->db);
    sqlite3_set_last_insert_rowid(k->db, NO_ROWID);
    p->returning = 0;
    rc = run(k, 'I', insert_sql, p, row, NULL);
    *inserted = sqlite3_last_insert_rowid(k->db) != NO_ROWID;
    if (!*inserted)
        sqlite3_set_last_insert_rowid(k->db, before);
    if (rc == SQLITE_DONE && k->ran->predict &&
        sqlite3_stmt_status(k->ran->stmt, SQLITE_STMTSTATUS_REPREPARE, 0) != 0)
        k->ran->predict = 0; /* re-prepared (counts from 0): the schema changed since */
    if (rc == SQLITE_DONE && k->ran->predict && predict_row(p, row, *inserted, out)) {
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE && *inserted) {
        rc = run(k, 'R', select_rowid_sql, p, row, out);
        if (rc == SQLITE_DONE)
            rc = fail(k, SQLITE_ERROR, "the inserted row of \"%s\" vanished", p->t->name);
        else if (rc == SQLITE_ROW)
            rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = select_by_key(k, p, row, out);
    }
    if (own)
        rc = savepoint_close(k, "duet_upsert", rc);
    return rc;
}

/* Upserts one row, appending the resulting row to out; *inserted tells
** whether it is new. */
static int upsert_row(Call* k, Spec* p, const Row* row, DuetBuf* out, int* inserted) {
    *inserted = 0;
    p->doNothing = 0;
    if (p->t->rowid && key_given(p->key, row))
        return upsert_rowid(k, p, row, out, inserted);
    p->returning = 1;
    if (p->t->rowid) {
        /* A key column the row does not give: RETURNING tells the row. */
        sqlite3_int64 before = sqlite3_last_insert_rowid(k->db);
        sqlite3_set_last_insert_rowid(k->db, NO_ROWID);
        int rc = run(k, 'I', insert_sql, p, row, out);
        *inserted = sqlite3_last_insert_rowid(k->db) != NO_ROWID;
        if (!*inserted)
            sqlite3_set_last_insert_rowid(k->db, before);
        if (rc != SQLITE_DONE)
            return rc == SQLITE_ROW ? SQLITE_OK : rc;
        return select_by_key(k, p, row, out);
    }
    /* WITHOUT ROWID: no rowid to tell an insert from an update. */
    p->doNothing = 1;
    int rc = run(k, 'I', insert_sql, p, row, out);
    *inserted = rc == SQLITE_ROW;
    if (rc == SQLITE_DONE && p->nUpd > 0)
        rc = run(k, 'U', update_sql, p, row, out);
    if (rc == SQLITE_DONE)
        return select_by_key(k, p, row, out);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* The update set: update_columns that the row gives, or by default every
** column the row gives outside the conflict target. */
static void update_set(Spec* p, const Row* row, int nExplicit, const int* explicitCols) {
    p->nUpd = 0;
    for (int i = 0; i < row->n; i++) {
        int col = row->col[i];
        if (nExplicit >= 0 ? set_contains(nExplicit, explicitCols, col)
                           : !set_contains(p->key->n, p->key->col, col))
            p->upd[p->nUpd++] = col;
    }
}

/* Everything an upsert needs from the arguments after the rows. */
typedef struct Args {
    int nConf, *conf;
    int nUpd, *upd;
} Args;

static void args_free(Spec* p, Args* a) {
    sqlite3_free(p->upd);
    p->upd = a->conf = a->upd = NULL;
}

/* Reads conflict_columns, update_columns and only_if_changed; free with
** args_free() whatever it returns. */
static int read_args(Call* k, Spec* p, Args* a, int argc, sqlite3_value** argv) {
    /* One allocation for the three column sets. */
    int n = p->t->nCol + 1;
    p->upd = sqlite3_malloc64(sizeof(int) * 3 * n);
    if (p->upd == NULL)
        return fail(k, SQLITE_NOMEM, "out of memory");
    a->conf = p->upd + n;
    a->upd = p->upd + 2 * n;
    int rc = read_names(k, p->t, argc > 2 ? argv[2] : NULL, "conflict_columns", &a->nConf, a->conf);
    if (rc == SQLITE_OK)
        rc = read_names(k, p->t, argc > 3 ? argv[3] : NULL, "update_columns", &a->nUpd, a->upd);
    if (rc == SQLITE_OK)
        rc = conflict_key(k, p->t, a->nConf, a->conf, &p->key);
    for (int i = 0; rc == SQLITE_OK && i < a->nUpd; i++)
        if (p->t->gen[a->upd[i]])
            rc = fail(
                k, SQLITE_ERROR,
                "column \"%s\" is a generated column (generated columns cannot be given a value)",
                p->t->col[a->upd[i]]);
    p->onlyIfChanged = argc > 4 && sqlite3_value_int(argv[4]) != 0;
    return rc;
}

/* Runs fn once, and again with an empty cache if the error may come from a
** stale table description or statement. */
static int with_retry(Call* k, int (*fn)(Call*, void*), void* arg) {
    int rc = fn(k, arg);
    int code = k->rc & 0xff;
    if (rc != SQLITE_OK && k->cached && (code == SQLITE_ERROR || code == SQLITE_SCHEMA)) {
        sqlite3_free(k->err);
        k->err = NULL;
        k->rc = 0;
        k->cached = 0;
        cache_clear(k->u);
        rc = fn(k, arg);
    }
    return rc;
}

/* ------------------------------------------------------------ duet_upsert */

typedef struct UpsertCall {
    int argc;
    sqlite3_value** argv;
    char* result;
    int nResult;
} UpsertCall;

static int do_upsert(Call* k, void* arg) {
    UpsertCall* uc = arg;
    Spec p = {0};
    Args a = {0};
    Row row = {0};
    int rc = table_get(k, (const char*)sqlite3_value_text(uc->argv[0]), (Table**)&p.t);
    if (rc == SQLITE_OK)
        rc = read_row(k, p.t, uc->argv[1], "row", &row);
    if (rc == SQLITE_OK)
        rc = read_args(k, &p, &a, uc->argc, uc->argv);
    if (rc == SQLITE_OK && row.n == 0)
        rc = fail(k, SQLITE_ERROR, "row must give at least one column");
    /* The result is written as the row is read: {"row":...,"inserted":...} */
    DuetBuf out = {0};
    int inserted = 0;
    duet_buf_append(&out, "{\"row\":", 7);
    if (rc == SQLITE_OK) {
        update_set(&p, &row, a.nUpd, a.upd);
        rc = upsert_row(k, &p, &row, &out, &inserted);
    }
    if (inserted)
        duet_buf_append(&out, ",\"inserted\":true}", 17);
    else
        duet_buf_append(&out, ",\"inserted\":false}", 18);
    if (rc == SQLITE_OK && out.oom)
        rc = fail(k, SQLITE_NOMEM, "out of memory");
    if (rc == SQLITE_OK) {
        out.z[out.n] = '\0';
        uc->result = out.z;
        uc->nResult = out.n;
    } else {
        sqlite3_free(out.z);
    }
    row_clear(&row);
    args_free(&p, &a);
    return rc;
}

static void call_init(Call* k, sqlite3_context* ctx, const char* fn) {
    memset(k, 0, sizeof(*k));
    k->u = sqlite3_user_data(ctx);
    k->db = sqlite3_context_db_handle(ctx);
    k->fn = fn;
}

static void result_json(sqlite3_context* ctx, char* json, int n) {
    sqlite3_result_text(ctx, json, n, sqlite3_free);
    sqlite3_result_subtype(ctx, JSON_SUBTYPE);
}

static void upsert_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    Call k;
    UpsertCall uc = {argc, argv, NULL, 0};
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL)
        return;
    call_init(&k, ctx, "duet_upsert");
    if (with_retry(&k, do_upsert, &uc) == SQLITE_OK)
        result_json(ctx, uc.result, uc.nResult);
    else
        call_result_error(ctx, &k);
    sqlite3_free(k.err);
}

/* ------------------------------------------------------- duet_upsert_many */

static int upsert_elements(Call* k, Spec* p, Args* a, const DuetJsonValue* rows, UpsertCall* uc);

/* All rows, in one savepoint, as a JSON array of results. */
static int do_upsert_many(Call* k, void* arg) {
    UpsertCall* uc = arg;
    Spec p = {0};
    Args a = {0};
    DuetJsonValue rows = {0};
    int rc = table_get(k, (const char*)sqlite3_value_text(uc->argv[0]), (Table**)&p.t);
    if (rc == SQLITE_OK)
        rc = parse_arg(k, uc->argv[1], "rows", &rows);
    /* Validated first, so that malformed JSON is reported before any row. */
    const char* why = NULL;
    if (rc == SQLITE_OK && rows.n < 0 && !json_valid(rows.z, &why))
        rc = json_invalid(k, "rows", why);
    if (rc == SQLITE_OK && rows.kind != DUET_JSON_ARRAY)
        rc = fail(k, SQLITE_MISMATCH, "rows must be a JSON array, not %s",
                  duet_json_kind_name(rows.kind));
    if (rc == SQLITE_OK)
        rc = read_args(k, &p, &a, uc->argc, uc->argv);
    int opened = 0;
    if (rc == SQLITE_OK)
        rc = savepoint_open(k, "duet_upsert_many", &opened);
    /* No savepoint: a statement that writes is running.  In autocommit mode
    ** an error from here fails it and SQLite rolls back its whole
    ** transaction, rows written before included: still all or nothing.
    ** Within BEGIN only the statement's own changes would be undone, and
    ** only if SQLite gave it a statement journal, which cannot be known: the
    ** rows would not be all or nothing, so the call is refused. */
    if (rc == SQLITE_OK && !opened && !sqlite3_get_autocommit(k->db))
        rc = fail(k, SQLITE_ERROR,
                  "cannot run in a statement that writes inside a transaction (the rows are "
                  "upserted all or nothing in a savepoint, which SQLite does not open while a "
                  "statement writes; call it from a SELECT)");
    if (rc == SQLITE_OK)
        rc = upsert_elements(k, &p, &a, &rows, uc);
    if (opened)
        rc = savepoint_close(k, "duet_upsert_many", rc);
    args_free(&p, &a);
    return rc;
}

/* Upserts each element of the rows array; the results go to uc->result. */
static int upsert_elements(Call* k, Spec* p, Args* a, const DuetJsonValue* rows, UpsertCall* uc) {
    DuetJsonIter it = {rows->z + 1, 0, 1, 1, NULL};
    DuetJsonValue elem;
    DuetBuf out = {0};
    int rc = SQLITE_OK;
    duet_buf_char(&out, '[');
    for (int i = 1; rc == SQLITE_OK && duet_json_next(&it, NULL, &elem) == 1; i++) {
        int inserted = 0;
        Row row = {0};
        rc = read_object(k, p->t, &elem, "row", &row);
        if (rc == SQLITE_OK && row.n == 0)
            rc = fail(k, SQLITE_ERROR, "row must give at least one column");
        if (i > 1)
            duet_buf_char(&out, ',');
        duet_buf_append(&out, "{\"row\":", 7);
        if (rc == SQLITE_OK) {
            update_set(p, &row, a->nUpd, a->upd);
            rc = upsert_row(k, p, &row, &out, &inserted);
        }
        if (rc == SQLITE_OK) {
            if (inserted)
                duet_buf_append(&out, ",\"inserted\":true}", 17);
            else
                duet_buf_append(&out, ",\"inserted\":false}", 18);
        } else if (k->err) {
            char* msg = sqlite3_mprintf("%s (element %d of the rows array)", k->err, i);
            sqlite3_free(k->err);
            k->err = msg;
        }
        row_clear(&row);
    }
    duet_buf_char(&out, ']');
    if (rc == SQLITE_OK && out.oom)
        rc = fail(k, SQLITE_NOMEM, "out of memory");
    if (rc == SQLITE_OK) {
        out.z[out.n] = '\0';
        uc->result = out.z;
        uc->nResult = out.n;
    } else {
        sqlite3_free(out.z);
    }
    return rc;
}

static void upsert_many_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    Call k;
    UpsertCall uc = {argc, argv, NULL, 0};
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL)
        return;
    call_init(&k, ctx, "duet_upsert_many");
    if (with_retry(&k, do_upsert_many, &uc) == SQLITE_OK)
        result_json(ctx, uc.result, uc.nResult);
    else
        call_result_error(ctx, &k);
    sqlite3_free(k.err);
}

/* ----------------------------------------------------- duet_get_or_create */

/* The key the lookup gives every column of: the primary key, or else the
** one with fewest columns. */
static int lookup_key(Call* k, const Table* t, const Row* lookup, const Key** pkey) {
    const Key* best = NULL;
    for (int i = 0; i < t->nKey; i++) {
        const Key* key = &t->key[i];
        int j = 0;
        while (j < key->n && param_of(lookup, key->col[j]))
            j++;
        if (j == key->n && (best == NULL || (!best->primary && key->n < best->n)))
            best = key;
    }
    if (best == NULL)
        return no_key_error(k, t, lookup->n, lookup->col, "lookup");
    for (int j = 0; j < best->n; j++)
        if (lookup->val[param_of(lookup, best->col[j]) - 1].kind == DUET_JSON_NULL)
            return fail(k, SQLITE_CONSTRAINT,
                        "lookup value for key column \"%s\" must not be null (a null never "
                        "conflicts, so the row could be created twice)",
                        t->col[best->col[j]]);
    *pkey = best;
    return SQLITE_OK;
}

typedef struct GocCall {
    sqlite3_value** argv;
    int argc;
    char* result;
    int nResult;
} GocCall;

static int merge_rows(Call* k, const Table* t, const Row* lookup, const Row* defaults, Row* all) {
    int rc = SQLITE_OK;
    for (int i = 0; rc == SQLITE_OK && i < defaults->n; i++) {
        if (param_of(lookup, defaults->col[i]))
            return fail(k, SQLITE_ERROR, "column \"%s\" appears in both lookup and defaults",
                        t->col[defaults->col[i]]);
        rc = row_put(k, all, defaults->col[i], &defaults->val[i]);
    }
    for (int i = 0; rc == SQLITE_OK && i < lookup->n; i++)
        rc = row_put(k, all, lookup->col[i], &lookup->val[i]);
    return rc;
}

/*
** SELECT, then INSERT ... ON CONFLICT (key) DO NOTHING RETURNING *, then
** SELECT again: no savepoint around them, so that the insert starts its own
** write transaction and waits in the busy handler like any writer (a read
** held across it would deadlock with a concurrent writer and fail with
** SQLITE_BUSY at once).  A row deleted between the conflict and the second
** lookup makes a new attempt.
*/
static int goc_steps(Call* k,
                     const Table* t,
                     const Row* lookup,
                     const Row* all,
                     DuetBuf* out,
                     int* created) {
    Spec p = {0};
    p.t = t;
    p.lookup = lookup;
    int rc = lookup_key(k, t, lookup, &p.key);
    for (int attempt = 1; rc == SQLITE_OK && attempt <= GOC_ATTEMPTS; attempt++) {
        p.doNothing = p.returning = 0;
        rc = run(k, 'L', select_lookup_sql, &p, all, out);
        if (rc != SQLITE_DONE)
            return rc == SQLITE_ROW ? SQLITE_OK : rc;
        p.doNothing = p.returning = 1;
        rc = run(k, 'I', insert_sql, &p, all, out);
        if (rc == SQLITE_ROW) {
            *created = 1;
            return SQLITE_OK;
        }
        if (rc != SQLITE_DONE)
            return rc;
        p.doNothing = p.returning = 0;
        rc = run(k, 'L', select_lookup_sql, &p, all, out);
        if (rc != SQLITE_DONE)
            return rc == SQLITE_ROW ? SQLITE_OK : rc;
        /* The key exists but the row differs from the lookup elsewhere, or
        ** it was deleted since the insert met it. */
        rc = run(k, 'K', select_key_sql, &p, all, NULL);
        if (rc == SQLITE_ROW && p.key->name)
            return fail(k, SQLITE_CONSTRAINT_UNIQUE,
                        "duplicate key value violates unique constraint \"%s\" (a row with the "
                        "same key exists but does not match the lookup)",
                        p.key->name);
        if (rc == SQLITE_ROW)
            return fail(k, SQLITE_CONSTRAINT_PRIMARYKEY,
                        "duplicate key value violates the primary key of \"%s\" (a row with the "
                        "same key exists but does not match the lookup)",
                        t->name);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        return rc;
    return fail(k, SQLITE_BUSY,
                "could not get or create a row in relation \"%s\" after %d attempts "
                "(concurrent sessions kept deleting the conflicting row)",
                t->name, GOC_ATTEMPTS);
}

static int do_get_or_create(Call* k, void* arg) {
    GocCall* gc = arg;
    Row lookup = {0}, defaults = {0}, all = {0};
    const Table* t;
    DuetBuf out = {0};
    int created = 0;
    const char* name = (const char*)sqlite3_value_text(gc->argv[0]);
    int current = 1;
    int rc = table_get(k, name, (Table**)&t);
    if (rc == SQLITE_OK && k->cached)
        rc = table_current(k, t, &current);
    if (rc == SQLITE_OK && !current) {
        cache_clear(k->u);
        k->cached = 0;
        rc = table_get(k, name, (Table**)&t);
    }
    if (rc == SQLITE_OK)
        rc = read_row(k, t, gc->argv[1], "lookup", &lookup);
    if (rc == SQLITE_OK && gc->argc > 2 && sqlite3_value_type(gc->argv[2]) != SQLITE_NULL)
        rc = read_row(k, t, gc->argv[2], "defaults", &defaults);
    if (rc == SQLITE_OK && lookup.n == 0)
        rc = fail(k, SQLITE_ERROR, "lookup must give at least one column");
    if (rc == SQLITE_OK)
        rc = merge_rows(k, t, &lookup, &defaults, &all);
    duet_buf_append(&out, "{\"row\":", 7);
    if (rc == SQLITE_OK)
        rc = goc_steps(k, t, &lookup, &all, &out, &created);
    if (created)
        duet_buf_append(&out, ",\"created\":true}", 16);
    else
        duet_buf_append(&out, ",\"created\":false}", 17);
    if (rc == SQLITE_OK && out.oom)
        rc = fail(k, SQLITE_NOMEM, "out of memory");
    if (rc == SQLITE_OK) {
        out.z[out.n] = '\0';
        gc->result = out.z;
        gc->nResult = out.n;
    } else {
        sqlite3_free(out.z);
    }
    row_clear(&lookup), row_clear(&defaults), row_clear(&all);
    return rc;
}

static void get_or_create_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    Call k;
    GocCall gc = {argv, argc, NULL, 0};
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL)
        return;
    call_init(&k, ctx, "duet_get_or_create");
    if (with_retry(&k, do_get_or_create, &gc) == SQLITE_OK)
        result_json(ctx, gc.result, gc.nResult);
    else
        call_result_error(ctx, &k);
    sqlite3_free(k.err);
}

int duet_upsert_register(sqlite3* db, DuetConn* c) {
    Upsert* u = sqlite3_malloc(sizeof(*u));
    if (u == NULL)
        return SQLITE_NOMEM;
    memset(u, 0, sizeof(*u));
    u->conn = c;
    c->upsert = u;
    /* Never SQLITE_DETERMINISTIC: they write.  The first registration owns u
    ** (SQLite frees it on failure too). */
    const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
    int rc = sqlite3_create_function_v2(db, "duet_upsert", 2, flags, u, upsert_func, NULL, NULL,
                                        upsert_free);
    for (int n = 3; rc == SQLITE_OK && n <= 5; n++)
        rc = sqlite3_create_function(db, "duet_upsert", n, flags, u, upsert_func, NULL, NULL);
    for (int n = 2; rc == SQLITE_OK && n <= 5; n++)
        rc = sqlite3_create_function(db, "duet_upsert_many", n, flags, u, upsert_many_func, NULL,
                                     NULL);
    for (int n = 2; rc == SQLITE_OK && n <= 3; n++)
        rc = sqlite3_create_function(db, "duet_get_or_create", n, flags, u, get_or_create_func,
                                     NULL, NULL);
    return rc;
}
