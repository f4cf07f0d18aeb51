/*
** upsert.c: duet_upsert and duet_upsert_many over JSON rows.
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
**
** The same functions as duet.upsert and duet.upsert_many on PostgreSQL, with
** JSON text results instead of composite rows.
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
** duet_get_or_create is in get_or_create.c.
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
** How "inserted" is known: an upsert that updates leaves
** sqlite3_last_insert_rowid() alone, so it is set to a sentinel before the
** statement (and restored after an update).  The row comes back by rowid or
** by key rather than through RETURNING, which costs four times the upsert
** itself in SQLite 3.40, or, where nothing but the INSERT can have shaped it
** and the input gives all of it, is written from the input without being
** read back (predict_row: a read is a third statement step, a third of the
** cost of a call).  A WITHOUT ROWID table has no rowid: it takes an
** INSERT ... DO NOTHING RETURNING *, then an UPDATE ... RETURNING *.
**
** Tables, statements and their cache: table_cache.c, statements.c; the
** JSON arguments: rows.c; the row written without reading it back:
** predict.c.
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
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "upsert_int.h"
SQLITE_EXTENSION_INIT3

#define NO_ROWID INT64_MIN /* last_insert_rowid sentinel: an update leaves it */

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
#define ARGS_INLINE 16 /* columns whose sets are held without allocating */
typedef struct Args {
    int nConf, *conf;
    int nUpd, *upd;
    int buf[3 * (ARGS_INLINE + 1)];
} Args;

/* No sets yet; buf is left as it is (read_args writes what it uses). */
static void args_init(Args* a) {
    a->nConf = a->nUpd = 0;
    a->conf = a->upd = NULL;
}

static void args_free(Spec* p, Args* a) {
    if (p->upd != a->buf)
        sqlite3_free(p->upd);
    p->upd = a->conf = a->upd = NULL;
}

/* Reads conflict_columns, update_columns and only_if_changed; free with
** args_free() whatever it returns. */
static int read_args(Call* k, Spec* p, Args* a, int argc, sqlite3_value** argv) {
    /* One block for the three column sets, on the stack for most tables:
    ** SQLite's allocations are system mallocs (Debian builds it without
    ** lookaside), each a good part of the cost of a call. */
    int n = p->t->nCol + 1;
    p->upd = n <= ARGS_INLINE + 1 ? a->buf : sqlite3_malloc64(sizeof(int) * 3 * n);
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

/* ------------------------------------------------------------ duet_upsert */

static int do_upsert(Call* k, void* arg) {
    FuncCall* uc = arg;
    Spec p = {0};
    Args a;
    args_init(&a);
    Row row;
    row_init(&row);
    int rc = table_get(k, (const char*)sqlite3_value_text(uc->argv[0]), (Table**)&p.t);
    if (rc == SQLITE_OK)
        rc = read_row(k, p.t, uc->argv[1], "row", &row);
    if (rc == SQLITE_OK)
        rc = read_args(k, &p, &a, uc->argc, uc->argv);
    if (rc == SQLITE_OK && row.n == 0)
        rc = fail(k, SQLITE_ERROR, "row must give at least one column");
    /* The result is written as the row is read: {"row":...,"inserted":...},
    ** in a buffer sized at once for about the input and the column names
    ** (each growth is an allocation and a copy). */
    DuetBuf out = {0};
    int inserted = 0;
    if (rc == SQLITE_OK)
        duet_buf_grow(&out, sqlite3_value_bytes(uc->argv[1]) + p.t->names.n + 32);
    duet_buf_append(&out, "{\"row\":", 7);
    if (rc == SQLITE_OK) {
        update_set(&p, &row, a.nUpd, a.upd);
        rc = upsert_row(k, &p, &row, &out, &inserted);
    }
    if (inserted)
        duet_buf_append(&out, ",\"inserted\":true}", 17);
    else
        duet_buf_append(&out, ",\"inserted\":false}", 18);
    rc = func_result(k, uc, &out, rc);
    row_clear(&row);
    args_free(&p, &a);
    return rc;
}

static void upsert_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    run_function(ctx, argc, argv, "duet_upsert", do_upsert);
}

/* ------------------------------------------------------- duet_upsert_many */

static int upsert_elements(Call* k, Spec* p, Args* a, const DuetJsonValue* rows, FuncCall* uc);

/* All rows, in one savepoint, as a JSON array of results. */
static int do_upsert_many(Call* k, void* arg) {
    FuncCall* uc = arg;
    Spec p = {0};
    Args a;
    args_init(&a);
    DuetJsonValue rows = {0};
    int rc = table_get(k, (const char*)sqlite3_value_text(uc->argv[0]), (Table**)&p.t);
    if (rc == SQLITE_OK)
        rc = parse_arg(k, uc->argv[1], "rows", &rows, NULL, 0);
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
static int upsert_elements(Call* k, Spec* p, Args* a, const DuetJsonValue* rows, FuncCall* uc) {
    DuetJsonIter it = {rows->z + 1, 0, 1, 1, NULL};
    DuetJsonValue elem;
    DuetBuf out = {0};
    int rc = SQLITE_OK;
    duet_buf_char(&out, '[');
    for (int i = 1; rc == SQLITE_OK && duet_json_next(&it, NULL, &elem) == 1; i++) {
        int inserted = 0;
        Row row;
        row_init(&row);
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
    rc = func_result(k, uc, &out, rc);
    return rc;
}

static void upsert_many_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    run_function(ctx, argc, argv, "duet_upsert_many", do_upsert_many);
}

int duet_upsert_register(sqlite3* db, DuetConn* c) {
    Upsert* u = sqlite3_malloc(sizeof(*u));
    if (u == NULL)
        return SQLITE_NOMEM;
    memset(u, 0, sizeof(*u));
    u->conn = c;
    c->upsert = u;
    /* Never SQLITE_DETERMINISTIC: they write.  The first registration owns u
    ** (SQLite frees it on failure too); get_or_create.c shares it. */
    const int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
    int rc = sqlite3_create_function_v2(db, "duet_upsert", 2, flags, u, upsert_func, NULL, NULL,
                                        upsert_free);
    for (int n = 3; rc == SQLITE_OK && n <= 5; n++)
        rc = sqlite3_create_function(db, "duet_upsert", n, flags, u, upsert_func, NULL, NULL);
    for (int n = 2; rc == SQLITE_OK && n <= 5; n++)
        rc = sqlite3_create_function(db, "duet_upsert_many", n, flags, u, upsert_many_func, NULL,
                                     NULL);
    return rc;
}
