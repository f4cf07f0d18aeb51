/*
** predict.c: the JSON of a row that a statement returns, and the "no
** read-back" fast path of duet_upsert: the row an upsert has just written,
** written from its input where nothing but the INSERT can have shaped it and
** the input gives all of it (a read is a third statement step, a third of
** the cost of a call).
**
** No SQL functions here.  Results are built in one DuetBuf, handed to SQLite
** without a copy; BLOB values come back as "\x..." hex strings.
*/
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "upsert_int.h"
SQLITE_EXTENSION_INIT3

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
void row_json(DuetBuf* out, Cached* c) {
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
int predictable(Call* k, const Table* t) {
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
int predict_row(const Spec* p, const Row* row, int inserted, DuetBuf* out) {
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
