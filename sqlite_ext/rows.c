/*
** rows.c: the JSON arguments of duet_upsert, duet_upsert_many and
** duet_get_or_create read against a table's description: rows (objects of
** column values) and sets of column names.
**
** No SQL functions here.  Values point into the argument's text; strings
** with escapes and nested values are copied.  JSON that PostgreSQL's jsonb
** refuses (\u0000, lone surrogates) is refused.
*/
#include <stddef.h>
#include <string.h>

#include "upsert_int.h"
SQLITE_EXTENSION_INIT3

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
int row_put(Call* k, Row* row, int col, const DuetJsonValue* v) {
    /* Keys usually come in table order: then the column goes last. */
    int i = row->n;
    if (i > 0 && row->col[i - 1] >= col)
        for (i = 0; row->col[i] < col; i++)
            continue;
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
        if (i < row->n) {
            memmove(&row->col[i + 1], &row->col[i], sizeof(int) * (row->n - i));
            memmove(&row->val[i + 1], &row->val[i], sizeof(DuetJsonValue) * (row->n - i));
            memmove(&row->own[i + 1], &row->own[i], sizeof(char*) * (row->n - i));
        }
        row->n++;
    }
    row->col[i] = col;
    row->val[i] = *v;
    row->own[i] = copy;
    return SQLITE_OK;
}

void row_clear(Row* row) {
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
int json_valid(const char* z, const char** why) {
    int kind;
    return duet_json_check(z, &kind, why);
}

/* The error for an argument that is not JSON, or JSON that PostgreSQL's
** jsonb would refuse (why: a \u0000 or a lone surrogate, see json.c). */
int json_invalid(Call* k, const char* what, const char* why) {
    if (why)
        return fail(k, SQLITE_ERROR, "%s %s", what, why);
    return fail(k, SQLITE_ERROR, "%s is not valid JSON", what);
}

/* Reads the members of an object value v as column values of t. */

int read_object(Call* k, const Table* t, const DuetJsonValue* v, const char* what, Row* row) {
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

/*
** The text of an argument, NUL-terminated, in UTF-8.  sqlite3_value_text()
** copies a text bound with its length to add the terminator (a malloc and a
** free, in a build without lookaside): one shorter than size, without a NUL
** inside, is copied to buf instead.  sqlite3_value_bytes() comes first, as
** it converts a UTF-16 value to UTF-8 and then sqlite3_value_blob() gives
** that text as it is.  (Where a value was marked a BLOB as well and kept
** UTF-16, its bytes hold a NUL, as UTF-16 JSON always does, and take the
** sqlite3_value_text() way.)
*/
static const char* arg_text(sqlite3_value* arg, char* buf, int size) {
    if (buf && sqlite3_value_type(arg) == SQLITE_TEXT) {
        int n = sqlite3_value_bytes(arg);
        const char* z = sqlite3_value_blob(arg);
        if (z && n < size && memchr(z, 0, (size_t)n) == NULL) {
            memcpy(buf, z, (size_t)n);
            buf[n] = '\0';
            return buf;
        }
    }
    return (const char*)sqlite3_value_text(arg);
}

/* Parses an argument as one JSON document, its text copied to buf (size
** bytes) when it fits (see arg_text; buf may be NULL), which must then
** outlive v.  An object or array is only located here (n = -1: its text
** runs to the end of the argument) and is validated as it is read, in one
** pass. */
int parse_arg(Call* k, sqlite3_value* arg, const char* what, DuetJsonValue* v, char* buf,
              int size) {
    const char* z = arg_text(arg, buf, size);
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
int read_row(Call* k, const Table* t, sqlite3_value* arg, const char* what, Row* row) {
    DuetJsonValue v;
    int rc = parse_arg(k, arg, what, &v, row->text, (int)sizeof(row->text));
    return rc == SQLITE_OK ? read_object(k, t, &v, what, row) : rc;
}

/* Reads a JSON array of column names into a sorted set; *pn = -1 for NULL. */
int read_names(Call* k, const Table* t, sqlite3_value* arg, const char* what, int* pn, int* cols) {
    *pn = -1;
    if (arg == NULL || sqlite3_value_type(arg) == SQLITE_NULL)
        return SQLITE_OK;
    DuetJsonValue v, item;
    char buf[256];
    int rc = parse_arg(k, arg, what, &v, buf, (int)sizeof(buf));
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

int no_key_error(Call* k, const Table* t, int n, const int* cols, const char* what) {
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
