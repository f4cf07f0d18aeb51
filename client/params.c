/*
 * params.c — duet_params, and the translation of placeholders.
 *
 * Users write one SQL text for both engines with :name, ? or $n
 * placeholders; each engine gets its native form (PostgreSQL $1..$n,
 * SQLite ?1..?n).  The scanner knows just enough SQL lexing to never
 * rewrite what is not a placeholder: '...' strings (E'..' with backslash
 * escapes), "..." identifiers, $tag$...$tag$ dollar quotes, -- and (nested)
 * block comments, and :: casts.  "??" stands for a literal '?' (PostgreSQL's
 * jsonb operators).  It runs in one pass and allocates only when the SQL
 * changes, so a statement without placeholders costs one scan.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Hard limit of the PostgreSQL protocol (and above SQLite's default). */
#define MAX_PARAMS 65535

/* ------------------------------------------------------------------ */
/* duet_buf                                                           */
/* ------------------------------------------------------------------ */

void duet__buf_add(duet_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void duet__buf_puts(duet_buf *b, const char *s) { duet__buf_add(b, s, strlen(s)); }

void duet__buf_printf(duet_buf *b, const char *fmt, ...) {
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        duet__buf_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    duet__buf_add(b, big, (size_t)n);
    free(big);
}

char *duet__buf_take(duet_buf *b) {
    char *p = b->oom ? NULL : b->p;
    if (b->oom) free(b->p);
    if (p == NULL && !b->oom) p = calloc(1, 1);
    *b = (duet_buf){0};
    return p;
}

/* ------------------------------------------------------------------ */
/* duet_params                                                        */
/* ------------------------------------------------------------------ */

duet_params *duet_params_new(void) { return calloc(1, sizeof(duet_params)); }

static void value_free(duet_value *v) {
    free(v->name);
    free(v->data);
}

void duet_params_clear(duet_params *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) value_free(&p->vals[i]);
    p->n = p->npositional = 0;
}

void duet_params_free(duet_params *p) {
    if (!p) return;
    duet_params_clear(p);
    free(p->vals);
    free(p);
}

static bool ident_start(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool ident_char(unsigned char c) {
    return ident_start(c) || (c >= '0' && c <= '9') || c >= 0x80;
}

/* A valid name: [A-Za-z_][A-Za-z0-9_]*, given with or without its colon. */
static const char *check_name(const char *name) {
    if (name[0] == ':') name++;
    if (!ident_start((unsigned char)name[0])) return NULL;
    for (const char *c = name; *c; c++)
        if (!ident_char((unsigned char)*c) || (unsigned char)*c >= 0x80) return NULL;
    return name;
}

/*
 * The slot a bind writes: the existing value of that name (rebinding
 * replaces it), or a new one at the end.
 */
static duet_status value_slot(duet_params *p, const char *name, duet_value **out) {
    if (!p) return duet__err(DUET_ERR_MISUSE, "duet_bind: NULL params");
    if (name) {
        const char *n = check_name(name);
        if (!n) return duet__err(DUET_ERR_MISUSE, "invalid parameter name \"%s\"", name);
        for (size_t i = 0; i < p->n; i++) {
            if (p->vals[i].name && strcmp(p->vals[i].name, n) == 0) {
                free(p->vals[i].data);
                p->vals[i].data = NULL;
                *out = &p->vals[i];
                return DUET_OK;
            }
        }
        name = n;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        duet_value *v = realloc(p->vals, cap * sizeof *v);
        if (!v) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
        p->vals = v;
        p->cap = cap;
    }
    duet_value *v = &p->vals[p->n];
    *v = (duet_value){0};
    if (name && !(v->name = strdup(name))) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    p->n++;
    if (!name) p->npositional++;
    *out = v;
    return DUET_OK;
}

/* Stores a copy of data[0..len) plus a terminating NUL. */
static duet_status set_data(duet_value *v, duet_value_type type, const void *data, size_t len) {
    v->type = type;
    v->data = malloc(len + 1);
    if (!v->data) {
        v->type = DUET_V_NULL;
        return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    }
    if (len) memcpy(v->data, data, len);
    v->data[len] = '\0';
    v->len = len;
    return DUET_OK;
}

duet_status duet_bind_text(duet_params *p, const char *name, const char *value) {
    if (!value) return duet_bind_null(p, name);
    duet_value *v;
    duet_status st = value_slot(p, name, &v);
    return st ? st : set_data(v, DUET_V_TEXT, value, strlen(value));
}

duet_status duet_bind_int64(duet_params *p, const char *name, int64_t value) {
    duet_value *v;
    char text[24];
    duet_status st = value_slot(p, name, &v);
    if (st) return st;
    v->i = value;
    return set_data(v, DUET_V_INT, text, (size_t)snprintf(text, sizeof text, "%lld", (long long)value));
}

duet_status duet_bind_double(duet_params *p, const char *name, double value) {
    duet_value *v;
    char text[40];
    duet_status st = value_slot(p, name, &v);
    if (st) return st;
    v->d = value;
    if (isnan(value))
        snprintf(text, sizeof text, "NaN");
    else if (isinf(value))
        snprintf(text, sizeof text, "%sInfinity", value < 0 ? "-" : "");
    else
        snprintf(text, sizeof text, "%.17g", value);
    return set_data(v, DUET_V_DOUBLE, text, strlen(text));
}

duet_status duet_bind_bool(duet_params *p, const char *name, bool value) {
    duet_value *v;
    duet_status st = value_slot(p, name, &v);
    if (st) return st;
    v->i = value ? 1 : 0;
    return set_data(v, DUET_V_BOOL, value ? "true" : "false", value ? 4 : 5);
}

duet_status duet_bind_bytes(duet_params *p, const char *name, const void *data, size_t len) {
    if (!data && len) return duet__err(DUET_ERR_MISUSE, "duet_bind_bytes: NULL data with length %zu", len);
    duet_value *v;
    duet_status st = value_slot(p, name, &v);
    return st ? st : set_data(v, DUET_V_BYTES, data, len);
}

duet_status duet_bind_null(duet_params *p, const char *name) {
    duet_value *v;
    duet_status st = value_slot(p, name, &v);
    if (st) return st;
    v->type = DUET_V_NULL;
    v->len = 0;
    return DUET_OK;
}

/* ------------------------------------------------------------------ */
/* Translation                                                        */
/* ------------------------------------------------------------------ */

typedef struct scanner {
    const char *sql;
    size_t n, i;
    size_t copied; /* sql[copied..i) is not yet in out */
    bool changed;
    duet_backend backend;
    duet_buf out;
    duet_sql *res;
    size_t cap;   /* allocated slots */
    unsigned seen; /* bit per duet_sql_style met */
} scanner;

/* Copies the pending source text to the output, then s (the rewrite). */
static void emit(scanner *sc, const char *s) {
    duet__buf_add(&sc->out, sc->sql + sc->copied, sc->i - sc->copied);
    duet__buf_puts(&sc->out, s);
    sc->changed = true;
}

static void emit_slot(scanner *sc, size_t number) {
    char s[16];
    snprintf(s, sizeof s, "%c%zu", sc->backend == DUET_SQLITE ? '?' : '$', number);
    emit(sc, s);
}

static duet_status grow_slots(scanner *sc, size_t need) {
    if (need > MAX_PARAMS)
        return duet__err(DUET_ERR_MISUSE, "too many parameters: more than %d", MAX_PARAMS);
    if (need <= sc->cap) return DUET_OK;
    size_t cap = sc->cap ? sc->cap : 8;
    while (cap < need) cap *= 2;
    duet_sql_slot *s = realloc(sc->res->slots, cap * sizeof *s);
    if (!s) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    memset(s + sc->cap, 0, (cap - sc->cap) * sizeof *s);
    sc->res->slots = s;
    sc->cap = cap;
    return DUET_OK;
}

/* :name — the same name twice shares one slot. */
static duet_status scan_named(scanner *sc) {
    size_t start = sc->i + 1, end = start;
    while (end < sc->n && ident_char((unsigned char)sc->sql[end]) &&
           (unsigned char)sc->sql[end] < 0x80)
        end++;
    duet_sql *r = sc->res;
    size_t k = 0;
    while (k < r->nslots && !(r->slots[k].name && strlen(r->slots[k].name) == end - start &&
                              memcmp(r->slots[k].name, sc->sql + start, end - start) == 0))
        k++;
    if (k == r->nslots) {
        duet_status st = grow_slots(sc, k + 1);
        if (st) return st;
        r->slots[k].name = strndup(sc->sql + start, end - start);
        if (!r->slots[k].name) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
        r->nslots++;
    }
    sc->seen |= 1u << DUET_STYLE_NAMED;
    emit_slot(sc, k + 1);
    sc->i = sc->copied = end;
    return DUET_OK;
}

/* $n or ?n: the n-th positional value. */
static duet_status scan_numbered(scanner *sc) {
    size_t end = sc->i + 1, number = 0;
    while (end < sc->n && sc->sql[end] >= '0' && sc->sql[end] <= '9') {
        number = number * 10 + (size_t)(sc->sql[end] - '0');
        if (number > MAX_PARAMS)
            return duet__err(DUET_ERR_MISUSE, "parameter number out of range (at most %d)",
                             MAX_PARAMS);
        end++;
    }
    if (number == 0) return duet__err(DUET_ERR_MISUSE, "parameter numbers start at 1");
    duet_status st = grow_slots(sc, number);
    if (st) return st;
    for (size_t k = sc->res->nslots; k < number; k++) sc->res->slots[k].pos = k;
    if (number > sc->res->nslots) sc->res->nslots = number;
    sc->seen |= 1u << DUET_STYLE_NUMBERED;
    bool native = (sc->sql[sc->i] == '$') == (sc->backend != DUET_SQLITE);
    if (!native) emit_slot(sc, number);
    sc->i = end;
    if (!native) sc->copied = end;
    return DUET_OK;
}

/* ? — positional values in order.  "??" is a literal '?'. */
static duet_status scan_qmark(scanner *sc) {
    if (sc->i + 1 < sc->n && sc->sql[sc->i + 1] == '?') {
        emit(sc, "?");
        sc->i += 2;
        sc->copied = sc->i;
        return DUET_OK;
    }
    size_t k = sc->res->nslots;
    duet_status st = grow_slots(sc, k + 1);
    if (st) return st;
    sc->res->slots[k].pos = k;
    sc->res->nslots++;
    sc->seen |= 1u << DUET_STYLE_QMARK;
    emit_slot(sc, k + 1);
    sc->copied = ++sc->i;
    return DUET_OK;
}

/* Skips a '...' string (E'...' takes backslash escapes) or a "..." identifier. */
static void skip_quoted(scanner *sc) {
    char q = sc->sql[sc->i];
    /* E'...' — but not when the E ends a word or a :name (":E'x'" is a parameter, then a string) */
    bool backslash = q == '\'' && sc->i > 0 && (sc->sql[sc->i - 1] | 0x20) == 'e' &&
                     (sc->i < 2 || (!ident_char((unsigned char)sc->sql[sc->i - 2]) &&
                                    sc->sql[sc->i - 2] != ':'));
    for (sc->i++; sc->i < sc->n; sc->i++) {
        char c = sc->sql[sc->i];
        if (backslash && c == '\\') {
            sc->i++;
        } else if (c == q) {
            sc->i++;
            return; /* a doubled quote re-enters on the next loop turn */
        }
    }
}

static void skip_comment(scanner *sc) {
    if (sc->sql[sc->i] == '-') {
        while (sc->i < sc->n && sc->sql[sc->i] != '\n') sc->i++;
        return;
    }
    int depth = 0; /* PostgreSQL nests block comments */
    while (sc->i < sc->n) {
        if (sc->sql[sc->i] == '/' && sc->i + 1 < sc->n && sc->sql[sc->i + 1] == '*') {
            depth++;
            sc->i += 2;
        } else if (sc->sql[sc->i] == '*' && sc->i + 1 < sc->n && sc->sql[sc->i + 1] == '/') {
            sc->i += 2;
            if (--depth == 0) return;
        } else {
            sc->i++;
        }
    }
}

/* $tag$ ... $tag$ (tag possibly empty); returns false when it is not a dollar quote. */
static bool skip_dollar_quote(scanner *sc) {
    size_t j = sc->i + 1;
    if (j < sc->n && ident_start((unsigned char)sc->sql[j]))
        while (j < sc->n && ident_char((unsigned char)sc->sql[j])) j++;
    if (j >= sc->n || sc->sql[j] != '$') return false;
    size_t taglen = j + 1 - sc->i;
    const char *tag = sc->sql + sc->i;
    for (size_t k = j + 1; k + taglen <= sc->n; k++) {
        if (sc->sql[k] == '$' && memcmp(sc->sql + k, tag, taglen) == 0) {
            sc->i = k + taglen;
            return true;
        }
    }
    sc->i = sc->n; /* unterminated: the engine reports it */
    return true;
}

static bool prev_is_ident(const scanner *sc) {
    return sc->i > 0 && ident_char((unsigned char)sc->sql[sc->i - 1]);
}

/* After '$' a placeholder would be rewritten into "$$1", which opens a dollar quote. */
static bool prev_is_dollar(const scanner *sc) { return sc->i > 0 && sc->sql[sc->i - 1] == '$'; }

/* One lexical step at sc->i. */
static duet_status scan_step(scanner *sc) {
    const char *s = sc->sql;
    char c = s[sc->i], next = sc->i + 1 < sc->n ? s[sc->i + 1] : '\0';
    if (c == '\'' || c == '"') {
        skip_quoted(sc);
    } else if ((c == '-' && next == '-') || (c == '/' && next == '*')) {
        skip_comment(sc);
    } else if (c == ':' && next == ':') {
        sc->i += 2; /* a cast, never a parameter */
    } else if (c == ':' && ident_start((unsigned char)next) && !prev_is_ident(sc) &&
               !prev_is_dollar(sc)) {
        return scan_named(sc);
    } else if (c == '?' && prev_is_dollar(sc)) {
        sc->i++;
    } else if (c == '?' && next >= '0' && next <= '9') {
        return scan_numbered(sc);
    } else if (c == '?') {
        return scan_qmark(sc);
    } else if (c == '$' && !prev_is_ident(sc) && next >= '0' && next <= '9') {
        return scan_numbered(sc);
    } else if (!(c == '$' && !prev_is_ident(sc) && skip_dollar_quote(sc))) {
        sc->i++;
    }
    return DUET_OK;
}

static const char *style_text(duet_sql_style s) {
    return s == DUET_STYLE_NAMED ? ":name" : s == DUET_STYLE_QMARK ? "?" : "$n";
}

static duet_status check_styles(scanner *sc) {
    duet_sql_style first = DUET_STYLE_NONE, second = DUET_STYLE_NONE;
    for (int s = DUET_STYLE_NAMED; s <= DUET_STYLE_NUMBERED; s++) {
        if (!(sc->seen & (1u << s))) continue;
        if (first == DUET_STYLE_NONE)
            first = (duet_sql_style)s;
        else if (second == DUET_STYLE_NONE)
            second = (duet_sql_style)s;
    }
    if (second != DUET_STYLE_NONE)
        return duet__err(DUET_ERR_MISUSE,
                         "the SQL mixes %s and %s parameters: use one style per statement",
                         style_text(first), style_text(second));
    sc->res->style = first;
    return DUET_OK;
}

void duet__sql_free(duet_sql *sql) {
    if (!sql) return;
    for (size_t i = 0; i < sql->nslots; i++) free(sql->slots[i].name);
    free(sql->slots);
    free(sql->native);
    *sql = (duet_sql){0};
}

duet_status duet__sql_translate(const char *sql, duet_backend backend, duet_sql *out) {
    *out = (duet_sql){0};
    if (!sql) return duet__err(DUET_ERR_MISUSE, "SQL is NULL");
    scanner sc = {.sql = sql, .n = strlen(sql), .backend = backend, .res = out};
    duet_status st = DUET_OK;
    while (st == DUET_OK && sc.i < sc.n) st = scan_step(&sc);
    if (st == DUET_OK) st = check_styles(&sc);
    if (st == DUET_OK && sc.changed) {
        sc.i = sc.n;
        emit(&sc, "");
        out->native = duet__buf_take(&sc.out);
        if (!out->native) st = duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    }
    free(sc.out.p);
    if (st) {
        duet__sql_free(out);
        return st;
    }
    out->text = out->native ? out->native : sql;
    return DUET_OK;
}

/* ------------------------------------------------------------------ */
/* Binding                                                            */
/* ------------------------------------------------------------------ */

static duet_status bind_named(const duet_sql *sql, const duet_params *p, const duet_value **vals) {
    if (p && p->npositional)
        return duet__err(DUET_ERR_MISUSE,
                         "the SQL uses :name parameters but %zu value%s bound by position",
                         p->npositional, p->npositional == 1 ? " is" : "s are");
    for (size_t k = 0; k < sql->nslots; k++) {
        vals[k] = NULL;
        for (size_t i = 0; p && i < p->n && !vals[k]; i++)
            if (strcmp(p->vals[i].name, sql->slots[k].name) == 0) vals[k] = &p->vals[i];
        if (!vals[k]) return duet__err(DUET_ERR_MISUSE, "parameter :%s is not bound", sql->slots[k].name);
    }
    return DUET_OK;
}

static duet_status bind_positional(const duet_sql *sql, const duet_params *p,
                                   const duet_value **vals) {
    size_t have = p ? p->npositional : 0;
    for (size_t i = 0; p && i < p->n; i++)
        if (p->vals[i].name)
            return duet__err(DUET_ERR_MISUSE,
                             "the SQL uses positional parameters but :%s is bound by name",
                             p->vals[i].name);
    if (sql->nslots > have) {
        if (sql->style == DUET_STYLE_QMARK)
            return duet__err(DUET_ERR_MISUSE,
                             "too few positional values: the SQL has %zu '?' but %zu %s bound",
                             sql->nslots, have, have == 1 ? "is" : "are");
        return duet__err(DUET_ERR_MISUSE,
                         "parameter $%zu is not bound: only %zu positional value%s bound",
                         sql->nslots, have, have == 1 ? " is" : "s are");
    }
    if (sql->nslots < have)
        return duet__err(DUET_ERR_MISUSE,
                         "too many positional values: %zu bound but the SQL uses %zu", have,
                         sql->nslots);
    for (size_t k = 0; k < sql->nslots; k++) vals[k] = &p->vals[sql->slots[k].pos];
    return DUET_OK;
}

duet_status duet__sql_bind(const duet_sql *sql, const duet_params *p, const duet_value **vals) {
    if (sql->style == DUET_STYLE_NAMED) return bind_named(sql, p, vals);
    if (sql->style != DUET_STYLE_NONE) return bind_positional(sql, p, vals);
    if (p && p->npositional)
        return duet__err(DUET_ERR_MISUSE,
                         "too many positional values: %zu bound but the SQL has no placeholder",
                         p->npositional);
    return DUET_OK;
}
