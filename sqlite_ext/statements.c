/*
** statements.c: the statements of duet_upsert, duet_upsert_many and
** duet_get_or_create, written from what they do (a Spec and the columns a
** row gives), cached by that signature (table_cache.c) and run; and the
** savepoints around them.
**
** No SQL functions here.  Identifiers are always quoted (with backquotes:
** see append_id), values are bound.
*/
#include <stddef.h>
#include <string.h>

#include "upsert_int.h"
SQLITE_EXTENSION_INIT3

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
    if (n > 0) /* v may be NULL then, which memcpy must not be given */
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
int param_of(const Row* row, int col) {
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

/* Runs the statement that build() writes for (p, row), cached by signature,
** to completion.  Returns SQLITE_ROW when it gave rows, the first one being
** appended to out (NULL when no row is wanted), or SQLITE_DONE. */
int run(Call* k, char kind, Builder build, const Spec* p, const Row* row, DuetBuf* out) {
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
int savepoint_open(Call* k, const char* name, int* opened) {
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
int savepoint_close(Call* k, const char* name, int rc) {
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
sqlite3_str* insert_sql(Call* k, const Spec* p, const Row* row) {
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
sqlite3_str* update_sql(Call* k, const Spec* p, const Row* row) {
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
sqlite3_str* select_key_sql(Call* k, const Spec* p, const Row* row) {
    sqlite3_str* sb = sqlite3_str_new(k->db);
    sqlite3_str_appendall(sb, "SELECT * FROM ");
    append_table(sb, p->t);
    append_key_where(sb, p->t, p->key, row);
    return sb;
}

/* SELECT * FROM t WHERE rowid = last_insert_rowid() */
sqlite3_str* select_rowid_sql(Call* k, const Spec* p, const Row* row) {
    (void)row;
    sqlite3_str* sb = sqlite3_str_new(k->db);
    sqlite3_str_appendall(sb, "SELECT * FROM ");
    append_table(sb, p->t);
    sqlite3_str_appendf(sb, " WHERE %s = last_insert_rowid()", p->t->rowidName);
    return sb;
}

/* SELECT * FROM t WHERE lookup LIMIT 1, parameters numbered as in row */
sqlite3_str* select_lookup_sql(Call* k, const Spec* p, const Row* row) {
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
int select_by_key(Call* k, Spec* p, const Row* row, DuetBuf* out) {
    int rc = run(k, 'K', select_key_sql, p, row, out);
    if (rc == SQLITE_DONE)
        rc = fail(k, SQLITE_ERROR, "could not find the row of \"%s\" that the row conflicts with",
                  p->t->name);
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
}

int key_given(const Key* key, const Row* row) {
    for (int i = 0; i < key->n; i++)
        if (!param_of(row, key->col[i]))
            return 0;
    return 1;
}
