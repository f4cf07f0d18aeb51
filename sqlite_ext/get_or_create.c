/*
** get_or_create.c: duet_get_or_create over JSON rows.
**
**     SELECT duet_get_or_create('users', '{"email":"d@x"}', '{"name":"dee"}');
**       -> {"row":{"id":3,"name":"dee","email":"d@x"},"created":true}
**     SELECT duet_get_or_create('users', '{"email":"d@x"}');
**       -> {"row":{"id":3,"name":"dee","email":"d@x"},"created":false}
**
** The same function as duet.get_or_create on PostgreSQL, with a JSON text
** result instead of a composite row.
** duet_get_or_create(table, lookup [, defaults]) returns the row matching
** lookup, or inserts lookup plus defaults (they must not overlap).  The
** lookup must give every column of a unique key (not null): the lookup, an
** INSERT ... ON CONFLICT (key) DO NOTHING and the lookup again run as
** separate statements, so that two connections racing on one key end with
** one row, created once, each insert waiting for the other in the busy
** handler.
**
** Values, tables and errors as for duet_upsert (upsert.c); it shares
** duet_upsert's cache of tables and statements (table_cache.c), which
** duet_upsert_register creates.
*/
#include <stddef.h>
#include <string.h>

#include "upsert_int.h"
SQLITE_EXTENSION_INIT3

#define GOC_ATTEMPTS 3 /* get_or_create retries when the conflicting row vanishes */

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
    FuncCall* gc = arg;
    Row lookup, defaults, all;
    row_init(&lookup), row_init(&defaults), row_init(&all);
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
    rc = func_result(k, gc, &out, rc);
    row_clear(&lookup), row_clear(&defaults), row_clear(&all);
    return rc;
}

static void get_or_create_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    run_function(ctx, argc, argv, "duet_get_or_create", do_get_or_create);
}

int duet_get_or_create_register(sqlite3* db, DuetConn* c) {
    Upsert* u = c->upsert;
    if (u == NULL)
        return SQLITE_MISUSE; /* duet_upsert_register comes first */
    /* Never SQLITE_DETERMINISTIC: it writes.  duet_upsert owns u. */
    const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
    int rc = SQLITE_OK;
    for (int n = 2; rc == SQLITE_OK && n <= 3; n++)
        rc = sqlite3_create_function(db, "duet_get_or_create", n, flags, u, get_or_create_func,
                                     NULL, NULL);
    return rc;
}
