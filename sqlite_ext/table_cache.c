/*
** table_cache.c: the per-connection cache behind duet_upsert,
** duet_upsert_many and duet_get_or_create (upsert.c, get_or_create.c):
** table resolution and descriptions, cached statements, and what each call
** of those functions shares (its error, its result, its retry).
**
** No SQL functions here.  The table is found as SQLite finds a name ('t':
** temp, main, then attached databases; 'aux.t' when aux is a database) and
** the statements name both parts.
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
*/
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include "upsert_int.h"
SQLITE_EXTENSION_INIT3

#define JSON_SUBTYPE 74 /* 'J', what SQLite's JSON functions mark JSON with */

/* ---------------------------------------------------------------- errors */

int fail(Call* k, int rc, const char* fmt, ...) {
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
int fail_db(Call* k, int rc) {
    (void)rc;
    return fail(k, sqlite3_extended_errcode(k->db), "%s", sqlite3_errmsg(k->db));
}

/* An int array for a set of columns of t; freed with sqlite3_free. */
int* column_set(Call* k, const Table* t) {
    int* set = sqlite3_malloc64(sizeof(int) * (t->nCol + 1));
    if (set == NULL)
        fail(k, SQLITE_NOMEM, "out of memory");
    return set;
}

void call_result_error(sqlite3_context* ctx, Call* k) {
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

void cache_clear(Upsert* u) {
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

void upsert_free(void* p) {
    Upsert* u = p;
    cache_clear(u);
    sqlite3_free(u);
}

/* The cached statement with key sig (n bytes), or NULL.  The last one used
** is tried first: a loop of upserts into one table hits it every time. */
Cached* stmt_find(Upsert* u, const void* sig, int n) {
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
int stmt_add(Call* k, const void* sig, int n, const char* sql, Cached** pc) {
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
int stmt_get(Call* k, const char* sql, sqlite3_stmt** pStmt) {
    int n = (int)strlen(sql) + 1;
    Cached* c = stmt_find(k->u, sql, n);
    int rc = c ? SQLITE_OK : stmt_add(k, sql, n, sql, &c);
    *pStmt = rc == SQLITE_OK ? c->stmt : NULL;
    return rc;
}

/* ------------------------------------------------------ table descriptions */

/* Whether the column name c is name (n bytes), as SQLite compares
** identifiers: ASCII letters in either case (sqlite3_strnicmp's rule),
** inline since every key of every row comes here. */
static int same_name(const char* c, const char* name, int n) {
    for (int i = 0; i < n; i++) {
        unsigned char a = (unsigned char)c[i], b = (unsigned char)name[i], lower = a | 0x20;
        if (a != b && (lower != (b | 0x20) || lower < 'a' || lower > 'z'))
            return 0;
    }
    return c[n] == '\0';
}

/* The column called name (n bytes, or NUL-terminated when n < 0), or -1,
** looking from column start on: a row's keys usually come in table order,
** so that the caller's guess (the column after the previous key) is right
** at once.  Names are unique regardless of case, so the order of the search
** does not change the answer. */
int column_index_from(const Table* t, const char* name, int n, int start) {
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
        if (same_name(c, name, n))
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
int table_current(Call* k, const Table* t, int* current) {
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
int table_get(Call* k, const char* name, Table** pt) {
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
char* set_list(const Table* t, int n, const int* cols) {
    sqlite3_str* sb = sqlite3_str_new(NULL);
    for (int i = 0; i < n; i++)
        sqlite3_str_appendf(sb, "%s%s", i ? ", " : "", t->col[cols[i]]);
    return sqlite3_str_finish(sb);
}

/* "(id), (email)": the table's unique keys. */
char* key_list(const Table* t) {
    sqlite3_str* sb = sqlite3_str_new(NULL);
    for (int i = 0; i < t->nKey; i++) {
        char* cols = set_list(t, t->key[i].n, t->key[i].col);
        sqlite3_str_appendf(sb, "%s(%s)", i ? ", " : "", cols);
        sqlite3_free(cols);
    }
    return sqlite3_str_finish(sb);
}

/* The column called name, or an error that lists the columns. */
int find_column(Call* k, const Table* t, const char* name, int* pcol) {
    *pcol = column_index(t, name, -1);
    if (*pcol >= 0)
        return SQLITE_OK;
    char* cols = column_list(t);
    fail(k, SQLITE_ERROR, "column \"%s\" of relation \"%s\" does not exist (columns are: %s)", name,
         t->name, cols);
    sqlite3_free(cols);
    return SQLITE_ERROR;
}

/* ----------------------------------------------------------------- calls */

/* Runs fn once, and again with an empty cache if the error may come from a
** stale table description or statement. */
int with_retry(Call* k, int (*fn)(Call*, void*), void* arg) {
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

void call_init(Call* k, sqlite3_context* ctx, const char* fn) {
    memset(k, 0, sizeof(*k));
    k->u = sqlite3_user_data(ctx);
    k->db = sqlite3_context_db_handle(ctx);
    k->fn = fn;
}

/* json is NUL-terminated: given without its length, SQLite measures it and
** knows that, so that sqlite3_column_text() on the result need not copy it
** to add a terminator (an allocation and a copy). */
static void result_json(sqlite3_context* ctx, char* json) {
    sqlite3_result_text(ctx, json, -1, sqlite3_free);
    sqlite3_result_subtype(ctx, JSON_SUBTYPE);
}

int func_result(Call* k, FuncCall* fc, DuetBuf* out, int rc) {
    if (rc == SQLITE_OK && out->oom)
        rc = fail(k, SQLITE_NOMEM, "out of memory");
    if (rc == SQLITE_OK) {
        out->z[out->n] = '\0';
        fc->result = out->z;
    } else {
        sqlite3_free(out->z);
    }
    return rc;
}

void run_function(sqlite3_context* ctx, int argc, sqlite3_value** argv, const char* name,
                  int (*work)(Call*, void*)) {
    Call k;
    FuncCall fc = {argc, argv, NULL};
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL)
        return;
    call_init(&k, ctx, name);
    if (with_retry(&k, work, &fc) == SQLITE_OK)
        result_json(ctx, fc.result);
    else
        call_result_error(ctx, &k);
    sqlite3_free(k.err);
}
