/*
** json.c: the small JSON reader and writer that upsert.c needs.
**
** No SQL functions here.  SQLite's own JSON functions are reached through
** SQL (json_each), which cost several microseconds a row in duet_upsert();
** reading a flat object in C costs a fraction of that.  The reader walks the
** members of one object or the elements of one array, validating as it goes;
** values point into the caller's text (strings with escapes and nested
** values are copied out by duet_json_text()).  The writer appends SQLite
** values as JSON the way json_object() does.
*/
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "duet_ext.h"
SQLITE_EXTENSION_INIT3

static const char* ws(const char* p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* Skips a string starting at its opening quote; NULL if malformed. */
static const char* skip_string(const char* p, int* escaped) {
    for (p++; *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            *escaped = 1;
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || p[i] == '\0')
                        return NULL;
                p += 4;
            } else if (*p == '\0' || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return p + 1;
}

/* Skips a number, telling whether it is an integer; NULL if malformed. */
static const char* skip_number(const char* p, int* isReal) {
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (*p == '.') {
        *isReal = 1;
        if (*++p < '0' || *p > '9')
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        *isReal = 1;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (*p < '0' || *p > '9')
            return NULL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return p;
}

/* A decimal integer that fits in 64 bits (strtoll saturates silently). */
static int int64_from_text(const char* z, sqlite3_int64* out) {
    char* end;
    long long x = strtoll(z, &end, 10);
    if (*end != '\0')
        return 0;
    char back[32];
    sqlite3_snprintf(sizeof(back), back, "%lld", x);
    if (strcmp(back, z[0] == '+' ? z + 1 : z) != 0)
        return 0;
    *out = x;
    return 1;
}

/* Reads one value at p into v; returns the end, or NULL if malformed.
** Nested arrays and objects are validated and kept as a span. */
static const char* read_value(const char* p, DuetJsonValue* v, int depth) {
    p = ws(p);
    memset(v, 0, sizeof(*v));
    v->z = p;
    if (depth > 200)
        return NULL;
    if (*p == '"') {
        v->kind = DUET_JSON_STRING;
        const char* end = skip_string(p, &v->escaped);
        if (end == NULL)
            return NULL;
        v->z = p + 1;
        v->n = (int)(end - p - 2);
        return end;
    }
    if (*p == '{' || *p == '[') {
        DuetJsonIter it;
        DuetJsonValue key, val;
        int rc;
        v->kind = *p == '{' ? DUET_JSON_OBJECT : DUET_JSON_ARRAY;
        it.p = p + 1;
        it.isObject = *p == '{';
        it.first = 1;
        it.depth = depth + 1;
        while ((rc = duet_json_next(&it, &key, &val)) == 1)
            continue;
        if (rc < 0)
            return NULL;
        v->n = (int)(it.p - p);
        return it.p;
    }
    static const struct {
        const char* word;
        int kind;
    } words[] = {{"true", DUET_JSON_TRUE}, {"false", DUET_JSON_FALSE}, {"null", DUET_JSON_NULL}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if (strncmp(p, words[i].word, n) == 0) {
            v->kind = words[i].kind;
            v->n = (int)n;
            return p + n;
        }
    }
    int isReal = 0;
    const char* end = skip_number(p, &isReal);
    if (end == NULL)
        return NULL;
    v->n = (int)(end - p);
    char buf[64];
    if (!isReal && v->n < 19) {
        memcpy(buf, p, v->n);
        buf[v->n] = '\0';
        v->kind = DUET_JSON_INT;
        v->i = strtoll(buf, NULL, 10);
    } else {
        /* Long integers may not fit in 64 bits: SQLite's own reading. */
        v->kind = DUET_JSON_REAL;
        char* copy = v->n < (int)sizeof(buf) ? buf : sqlite3_malloc(v->n + 1);
        if (copy == NULL)
            return NULL;
        memcpy(copy, p, v->n);
        copy[v->n] = '\0';
        if (!isReal && int64_from_text(copy, &v->i))
            v->kind = DUET_JSON_INT;
        else
            v->r = strtod(copy, NULL);
        if (copy != buf)
            sqlite3_free(copy);
    }
    return end;
}

/* Whether nothing but blanks follows the value an iterator has finished. */
int duet_json_at_end(const DuetJsonIter* it) {
    return *ws(it->p) == '\0';
}

/* The kind of a whole document, and whether it is valid JSON. */
int duet_json_kind(const char* z, int* kind) {
    DuetJsonValue v;
    const char* end = read_value(z ? z : "", &v, 0);
    if (end == NULL || *ws(end) != '\0')
        return 0;
    *kind = v.kind;
    return 1;
}

/* Starts walking an object or array document. */
int duet_json_open(DuetJsonIter* it, const char* z, int* kind) {
    if (!duet_json_kind(z, kind))
        return 0;
    const char* p = ws(z);
    it->p = p + 1;
    it->isObject = *p == '{';
    it->first = 1;
    it->depth = 1;
    return 1;
}

/* The next member (key and value) or element (value): 1, 0 at the end,
** -1 when malformed. */
int duet_json_next(DuetJsonIter* it, DuetJsonValue* key, DuetJsonValue* val) {
    DuetJsonValue ignored;
    if (key == NULL)
        key = &ignored; /* an object's keys are read even when unwanted */
    const char* p = ws(it->p);
    char close = it->isObject ? '}' : ']';
    if (*p == close) {
        it->p = p + 1;
        return 0;
    }
    if (!it->first) {
        if (*p != ',')
            return -1;
        p = ws(p + 1);
    }
    it->first = 0;
    if (it->isObject) {
        if (*p != '"')
            return -1;
        p = read_value(p, key, it->depth);
        if (p == NULL)
            return -1;
        p = ws(p);
        if (*p != ':')
            return -1;
        p++;
    }
    p = read_value(p, val, it->depth);
    if (p == NULL)
        return -1;
    it->p = p;
    return 1;
}

/* Appends the UTF-8 of code point c. */
static void append_utf8(sqlite3_str* sb, unsigned c) {
    char b[4];
    int n;
    if (c < 0x80)
        b[0] = (char)c, n = 1;
    else if (c < 0x800)
        b[0] = (char)(0xC0 | (c >> 6)), b[1] = (char)(0x80 | (c & 0x3F)), n = 2;
    else if (c < 0x10000)
        b[0] = (char)(0xE0 | (c >> 12)), b[1] = (char)(0x80 | ((c >> 6) & 0x3F)),
        b[2] = (char)(0x80 | (c & 0x3F)), n = 3;
    else
        b[0] = (char)(0xF0 | (c >> 18)), b[1] = (char)(0x80 | ((c >> 12) & 0x3F)),
        b[2] = (char)(0x80 | ((c >> 6) & 0x3F)), b[3] = (char)(0x80 | (c & 0x3F)), n = 4;
    sqlite3_str_append(sb, b, n);
}

static void unescape(sqlite3_str* sb, const char* z, int n) {
    for (int i = 0; i < n; i++) {
        if (z[i] != '\\') {
            sqlite3_str_appendchar(sb, 1, z[i]);
            continue;
        }
        char e = z[++i];
        const char *from = "bfnrt", *to = "\b\f\n\r\t";
        const char* at = strchr(from, e);
        if (e == 'u') {
            unsigned c =
                (unsigned)strtoul((char[]){z[i + 1], z[i + 2], z[i + 3], z[i + 4], 0}, NULL, 16);
            i += 4;
            if (c >= 0xD800 && c < 0xDC00 && i + 6 < n && z[i + 1] == '\\' && z[i + 2] == 'u') {
                unsigned lo = (unsigned)strtoul((char[]){z[i + 3], z[i + 4], z[i + 5], z[i + 6], 0},
                                                NULL, 16);
                if (lo >= 0xDC00 && lo < 0xE000) {
                    c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
            }
            append_utf8(sb, c);
        } else {
            sqlite3_str_appendchar(sb, 1, at ? to[at - from] : e);
        }
    }
}

/* Nested JSON without the blanks between tokens, as json() writes it. */
static void minify(sqlite3_str* sb, const char* z, int n) {
    for (int i = 0; i < n; i++) {
        if (z[i] == '"') {
            int esc = 0;
            const char* end = skip_string(z + i, &esc);
            int len = end ? (int)(end - (z + i)) : n - i;
            sqlite3_str_append(sb, z + i, len);
            i += len - 1;
        } else if (z[i] != ' ' && z[i] != '\t' && z[i] != '\n' && z[i] != '\r') {
            sqlite3_str_appendchar(sb, 1, z[i]);
        }
    }
}

/* The text of a string (unescaped) or of nested JSON (minified), in memory
** from sqlite3_malloc; NULL when out of memory. */
char* duet_json_text(const DuetJsonValue* v) {
    sqlite3_str* sb = sqlite3_str_new(NULL);
    if (v->kind == DUET_JSON_STRING)
        unescape(sb, v->z, v->n);
    else
        minify(sb, v->z, v->n);
    int err = sqlite3_str_errcode(sb);
    char* z = sqlite3_str_finish(sb);
    return z || err ? z : sqlite3_mprintf(""); /* an empty string is not NULL */
}

/* The type name PostgreSQL's jsonb_typeof gives. */
const char* duet_json_kind_name(int kind) {
    switch (kind) {
        case DUET_JSON_NULL:
            return "null";
        case DUET_JSON_TRUE:
        case DUET_JSON_FALSE:
            return "boolean";
        case DUET_JSON_INT:
        case DUET_JSON_REAL:
            return "number";
        case DUET_JSON_STRING:
            return "string";
        case DUET_JSON_ARRAY:
            return "array";
        default:
            return "object";
    }
}

/* Appends text as a JSON string, escaped as json_object() does. */
void duet_json_append_string(sqlite3_str* sb, const char* z, int n) {
    static const char hex[] = "0123456789abcdef";
    sqlite3_str_appendchar(sb, 1, '"');
    int start = 0;
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)z[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sqlite3_str_append(sb, z + start, i - start);
        start = i + 1;
        const char* at = c ? strchr("\b\f\n\r\t", c) : NULL;
        if (c == '"' || c == '\\') {
            sqlite3_str_appendchar(sb, 1, '\\');
            sqlite3_str_appendchar(sb, 1, (char)c);
        } else if (at) {
            sqlite3_str_appendchar(sb, 1, '\\');
            sqlite3_str_appendchar(sb, 1, "bfnrt"[at - "\b\f\n\r\t"]);
        } else {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sqlite3_str_append(sb, u, 6);
        }
    }
    sqlite3_str_append(sb, z + start, n - start);
    sqlite3_str_appendchar(sb, 1, '"');
}

/* Appends column i of a row as a JSON value; BLOBs as "\x..." hex text. */
void duet_json_append_column(sqlite3_str* sb, sqlite3_stmt* s, int i) {
    switch (sqlite3_column_type(s, i)) {
        case SQLITE_INTEGER: {
            /* By hand: printf is a good part of the cost of a small row. */
            sqlite3_int64 v = sqlite3_column_int64(s, i);
            sqlite3_uint64 u = v < 0 ? 0 - (sqlite3_uint64)v : (sqlite3_uint64)v;
            char buf[24];
            int n = sizeof(buf);
            do
                buf[--n] = (char)('0' + u % 10), u /= 10;
            while (u);
            if (v < 0)
                buf[--n] = '-';
            sqlite3_str_append(sb, buf + n, (int)sizeof(buf) - n);
            break;
        }
        case SQLITE_FLOAT: {
            double r = sqlite3_column_double(s, i);
            if (isnan(r))
                sqlite3_str_appendall(sb, "null");
            else if (isinf(r))
                sqlite3_str_appendall(sb, r > 0 ? "9.0e+999" : "-9.0e+999");
            else
                sqlite3_str_appendf(sb, "%!.15g", r);
            break;
        }
        case SQLITE_TEXT:
            duet_json_append_string(sb, (const char*)sqlite3_column_text(s, i),
                                    sqlite3_column_bytes(s, i));
            break;
        case SQLITE_BLOB: {
            const unsigned char* b = sqlite3_column_blob(s, i);
            int n = sqlite3_column_bytes(s, i);
            sqlite3_str_appendall(sb, "\"\\\\x");
            for (int j = 0; j < n; j++)
                sqlite3_str_appendf(sb, "%02x", b[j]);
            sqlite3_str_appendchar(sb, 1, '"');
            break;
        }
        default:
            sqlite3_str_appendall(sb, "null");
    }
}
