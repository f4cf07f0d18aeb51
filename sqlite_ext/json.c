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
#include <float.h>
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

/* The value of the four hex digits at p, or -1 (a NUL stops at the first). */
static int hex4(const char* p) {
    int c = 0;
    for (int i = 0; i < 4; i++) {
        int d = p[i] >= '0' && p[i] <= '9'   ? p[i] - '0'
                : p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10
                : p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 10
                                             : -1;
        if (d < 0)
            return -1;
        c = c * 16 + d;
    }
    return c;
}

/* The bytes a JSON string cannot hold as they are: controls (NUL too), the
** quote and the backslash.  Strings are scanned for them a byte at a time
** with one lookup, since most strings have none. */
static const unsigned char special[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    ['"'] = 1, ['\\'] = 1};

/* Checks the escape at p (just past its backslash); returns its last byte,
** or NULL if malformed, with *why as skip_string() sets it. */
static const char* skip_escape(const char* p, const char** why) {
    if (*p != 'u')
        return *p != '\0' && strchr("\"\\/bfnrt", *p) ? p : NULL;
    int c = hex4(p + 1);
    if (c < 0)
        return NULL;
    p += 4;
    if (c == 0) {
        *why = "has an unsupported Unicode escape sequence (\\u0000 cannot be "
               "converted to text)";
        return NULL;
    }
    if (c >= 0xDC00 && c < 0xE000) {
        *why = "is not valid JSON (Unicode low surrogate must follow a high surrogate)";
        return NULL;
    }
    if (c >= 0xD800 && c < 0xDC00) {
        int lo = p[1] == '\\' && p[2] == 'u' ? hex4(p + 3) : -1;
        if (lo >= 0xD800 && lo < 0xDC00) {
            *why = "is not valid JSON (Unicode high surrogate must not follow a high "
                   "surrogate)";
            return NULL;
        }
        if (lo < 0xDC00 || lo >= 0xE000) {
            *why = "is not valid JSON (Unicode low surrogate must follow a high "
                   "surrogate)";
            return NULL;
        }
        p += 6;
    }
    return p;
}

/* Skips a string starting at its opening quote; NULL if malformed, with
** *why set when the string is JSON but not text PostgreSQL's jsonb takes:
** \u0000 (no NUL in text: bound with its length it would be stored cut or
** with a NUL inside) and surrogates not in pairs (no valid UTF-8 for them). */
static const char* skip_string(const char* p, int* escaped, const char** why) {
    for (p++;; p++) {
        while (!special[(unsigned char)*p])
            p++;
        if (*p == '"')
            return p + 1;
        if (*p != '\\') /* a control character, or the end of the text */
            return NULL;
        *escaped = 1;
        if ((p = skip_escape(p + 1, why)) == NULL)
            return NULL;
    }
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

/*
** A decimal number of at most 15 digits whose power of ten is within 22
** (1.5, -0.25, 3e5), read without strtod(): the digits as an integer m
** (below 2^53) and 10^e are both exact doubles, so m * 10^e or m / 10^-e
** is one correctly rounded operation, which is what strtod() returns
** (Clinger's fast path).  Only where doubles are evaluated as doubles
** (FLT_EVAL_METHOD 0: no x87 extended precision rounding twice).  Returns
** 0 for any other number, left to strtod().
*/
static int real_exact(const char* p, const char* end, double* r) {
#if FLT_EVAL_METHOD == 0
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    int neg = *p == '-', digits = 0, e = 0;
    sqlite3_uint64 m = 0;
    for (p += neg; p < end && *p != 'e' && *p != 'E'; p++) {
        if (*p == '.') {
            e = -(int)(end - p - 1); /* corrected below for an exponent */
            continue;
        }
        if (++digits > 15)
            return 0;
        m = m * 10 + (sqlite3_uint64)(*p - '0');
    }
    if (p < end) {
        /* e counted the exponent's characters as fraction digits. */
        if (e < 0)
            e += (int)(end - p);
        int sign = p[1] == '-' ? -1 : 1, x = 0;
        for (p += 1 + (p[1] == '-' || p[1] == '+'); p < end; p++) {
            if (x > 100)
                return 0;
            x = x * 10 + (*p - '0');
        }
        e += sign * x;
    }
    if (e < -22 || e > 22)
        return 0;
    double d = e < 0 ? (double)m / pow10[-e] : (double)m * pow10[e];
    *r = neg ? -d : d;
    return 1;
#else
    (void)p, (void)end, (void)r;
    return 0;
#endif
}

/* Reads the string at p (its opening quote) into v; returns its end, or
** NULL if malformed.  Object keys come here directly. */
static const char* read_string(const char* p, DuetJsonValue* v, const char** why) {
    memset(v, 0, sizeof(*v));
    v->kind = DUET_JSON_STRING;
    const char* end = skip_string(p, &v->escaped, why);
    if (end == NULL)
        return NULL;
    v->z = p + 1;
    v->n = (int)(end - p - 2);
    return end;
}

/* Reads one value at p into v; returns the end, or NULL if malformed.
** Nested arrays and objects are validated and kept as a span. */
static const char* read_value(const char* p, DuetJsonValue* v, int depth, const char** why) {
    p = ws(p);
    if (depth > 200)
        return NULL;
    if (*p == '"')
        return read_string(p, v, why);
    memset(v, 0, sizeof(*v));
    v->z = p;
    if (*p == '{' || *p == '[') {
        DuetJsonIter it;
        DuetJsonValue key, val;
        int rc;
        v->kind = *p == '{' ? DUET_JSON_OBJECT : DUET_JSON_ARRAY;
        it.p = p + 1;
        it.isObject = *p == '{';
        it.first = 1;
        it.depth = depth + 1;
        it.why = NULL;
        while ((rc = duet_json_next(&it, &key, &val)) == 1)
            continue;
        if (rc < 0) {
            *why = it.why;
            return NULL;
        }
        v->n = (int)(it.p - p);
        return it.p;
    }
    /* Chosen by the first letter: a number costs no failed comparisons. */
    const char* word = *p == 't' ? "true" : *p == 'f' ? "false" : *p == 'n' ? "null" : NULL;
    if (word) {
        size_t n = strlen(word);
        if (strncmp(p, word, n) != 0)
            return NULL;
        v->kind = *p == 't' ? DUET_JSON_TRUE : *p == 'f' ? DUET_JSON_FALSE : DUET_JSON_NULL;
        v->n = (int)n;
        return p + n;
    }
    int isReal = 0;
    const char* end = skip_number(p, &isReal);
    if (end == NULL)
        return NULL;
    v->n = (int)(end - p);
    char buf[64];
    if (!isReal && v->n < 19) {
        /* At most 18 digits: no overflow, so no need for strtoll. */
        sqlite3_int64 x = 0;
        for (const char* q = *p == '-' ? p + 1 : p; q < end; q++)
            x = x * 10 + (*q - '0');
        v->kind = DUET_JSON_INT;
        v->i = *p == '-' ? -x : x;
    } else if (isReal && real_exact(p, end, &v->r)) {
        v->kind = DUET_JSON_REAL;
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

/* The kind of a whole document, and whether it is valid JSON; *why (when
** not NULL) tells what is wrong beyond malformed syntax, or is NULL. */
int duet_json_check(const char* z, int* kind, const char** why) {
    DuetJsonValue v;
    const char* ignored = NULL;
    if (why == NULL)
        why = &ignored;
    *why = NULL;
    const char* end = read_value(z ? z : "", &v, 0, why);
    if (end == NULL || *ws(end) != '\0')
        return 0;
    *kind = v.kind;
    return 1;
}

int duet_json_kind(const char* z, int* kind) {
    return duet_json_check(z, kind, NULL);
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
    it->why = NULL;
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
        if (*p != '"' || it->depth > 200)
            return -1;
        p = read_string(p, key, &it->why);
        if (p == NULL)
            return -1;
        p = ws(p);
        if (*p != ':')
            return -1;
        p++;
    }
    p = read_value(p, val, it->depth, &it->why);
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
            const char* why = NULL;
            const char* end = skip_string(z + i, &esc, &why);
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

/* Makes room for need more bytes and a terminator; nonzero when out of
** memory (the buffer is then marked and left as it was). */
int duet_buf_grow(DuetBuf* b, int need) {
    if (b->oom)
        return 1;
    sqlite3_int64 cap = b->cap ? b->cap : 128;
    while (cap <= (sqlite3_int64)b->n + need)
        cap *= 2;
    char* z = cap > 0x7fffffff ? NULL : sqlite3_realloc64(b->z, (sqlite3_uint64)cap);
    if (z == NULL) {
        b->oom = 1;
        return 1;
    }
    b->z = z;
    b->cap = (int)cap;
    return 0;
}

/* Appends text as a JSON string, escaped as json_object() does: runs of
** bytes that need no escape are copied whole, and most strings are one. */
void duet_json_append_string(DuetBuf* b, const char* z, int n) {
    static const char hex[] = "0123456789abcdef";
    int clean = 0;
    while (clean < n && !special[(unsigned char)z[clean]])
        clean++;
    if (clean == n) {
        if (b->n + n + 2 >= b->cap && duet_buf_grow(b, n + 2))
            return;
        b->z[b->n] = '"';
        memcpy(b->z + b->n + 1, z, (size_t)n);
        b->z[b->n + n + 1] = '"';
        b->n += n + 2;
        return;
    }
    duet_buf_char(b, '"');
    for (int i = 0; i < n; i++) {
        int start = i;
        while (i < n && !special[(unsigned char)z[i]])
            i++;
        duet_buf_append(b, z + start, i - start);
        if (i == n)
            break;
        unsigned char c = (unsigned char)z[i];
        const char* at = c ? strchr("\b\f\n\r\t", c) : NULL;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            duet_buf_append(b, e, 2);
        } else if (at) {
            char e[2] = {'\\', "bfnrt"[at - "\b\f\n\r\t"]};
            duet_buf_append(b, e, 2);
        } else {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            duet_buf_append(b, u, 6);
        }
    }
    duet_buf_char(b, '"');
}

/* Appends an integer.  By hand: printf is a good part of the cost of a
** small row. */
void duet_json_append_int(DuetBuf* b, sqlite3_int64 x) {
    sqlite3_uint64 u = x < 0 ? 0 - (sqlite3_uint64)x : (sqlite3_uint64)x;
    char buf[24];
    int n = sizeof(buf);
    do
        buf[--n] = (char)('0' + u % 10), u /= 10;
    while (u);
    if (x < 0)
        buf[--n] = '-';
    duet_buf_append(b, buf + n, (int)sizeof(buf) - n);
}

/*
** Appends r as "%!.15g" writes it where r is m / 2^k (k from 1 to 18: a
** half, a quarter, ...) whose decimal digits, m * 5^k, are at most 15, and
** |r| is at least 1e-4: the digits are then exact, and SQLite, which adds
** half a unit of the 15th digit before cutting, writes them all (its own
** error is some 1e-18) and drops the zeros after them.  Returns 0, having
** appended nothing, for any other r.
*/
static int append_short_fraction(DuetBuf* b, double r) {
    double a = r < 0 ? -r : r;
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    sqlite3_uint64 pow5 = 1, pow10 = 1;
    for (int k = 1; k <= 18; k++) {
        a *= 2; /* exact */
        pow5 *= 5, pow10 *= 10;
        if (a >= 1e15)
            return 0;
        if (a != (double)(sqlite3_int64)a)
            continue;
        sqlite3_uint64 m = (sqlite3_uint64)a;
        if (m > 999999999999999ULL / pow5)
            return 0;
        sqlite3_uint64 d = m * pow5; /* |r| * 10^k */
        char frac[20];
        sqlite3_uint64 f = d % pow10;
        for (int i = k - 1; i >= 0; i--, f /= 10)
            frac[i] = (char)('0' + f % 10);
        if (r < 0)
            duet_buf_char(b, '-'); /* also before a zero: "-0.5" */
        duet_json_append_int(b, (sqlite3_int64)(d / pow10));
        duet_buf_char(b, '.');
        duet_buf_append(b, frac, k);
        return 1;
    }
    return 0;
}

/* Appends a REAL as json_object() writes it ("%!.15g"). */
void duet_json_append_real(DuetBuf* b, double r) {
    char buf[40];
    /* A whole number below 10^15 has at most 15 digits, which "%!.15g"
    ** writes in full, then ".0" (-0.0 too comes out as "0.0"); by hand, it
    ** costs a tenth of the formatting. */
    if (r > -1e15 && r < 1e15 && r == (double)(sqlite3_int64)r) {
        duet_json_append_int(b, (sqlite3_int64)r);
        duet_buf_append(b, ".0", 2);
        return;
    }
    if (append_short_fraction(b, r))
        return;
    if (isnan(r))
        duet_buf_append(b, "null", 4);
    else if (isinf(r))
        duet_buf_append(b, r > 0 ? "9.0e+999" : "-9.0e+999", r > 0 ? 8 : 9);
    else
        duet_buf_append(b, buf, (int)strlen(sqlite3_snprintf(sizeof(buf), buf, "%!.15g", r)));
}

/* Appends a value as JSON; BLOBs as "\x..." hex text.  Takes a value
** rather than a statement column: the sqlite3_value_* accessors do not take
** the connection's mutex, the sqlite3_column_* ones do, each call. */
void duet_json_append_value(DuetBuf* b, sqlite3_value* v) {
    switch (sqlite3_value_type(v)) {
        case SQLITE_INTEGER:
            duet_json_append_int(b, sqlite3_value_int64(v));
            break;
        case SQLITE_FLOAT:
            duet_json_append_real(b, sqlite3_value_double(v));
            break;
        case SQLITE_TEXT: {
            const char* z = (const char*)sqlite3_value_text(v);
            duet_json_append_string(b, z, sqlite3_value_bytes(v));
            break;
        }
        case SQLITE_BLOB: {
            static const char hex[] = "0123456789abcdef";
            const unsigned char* z = sqlite3_value_blob(v);
            int n = sqlite3_value_bytes(v);
            duet_buf_append(b, "\"\\\\x", 4);
            for (int j = 0; j < n; j++) {
                char h[2] = {hex[z[j] >> 4], hex[z[j] & 15]};
                duet_buf_append(b, h, 2);
            }
            duet_buf_char(b, '"');
            break;
        }
        default:
            duet_buf_append(b, "null", 4);
    }
}
