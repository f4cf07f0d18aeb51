/*
 * result.c — duet_result: rows, column names and typed getters.
 *
 * Two representations behind one API:
 *   - PostgreSQL results wrap the PGresult itself: values are read in place
 *     (no copy, so fetch_all costs what PQexec costs); bytea is decoded from
 *     its hex text form on first request and cached.
 *   - Results built cell by cell (SQLite, fetch_val) keep native integers,
 *     doubles and blobs; their bytes live in an arena of chunks that never
 *     move, so borrowed pointers stay valid until duet_result_free.  The
 *     text form of a number is made on first request.
 * A result is used by one thread at a time, which is what makes those
 * lazily filled caches behind a const handle safe.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "internal.h"

#define BYTEAOID 17

typedef enum cell_kind { C_NULL, C_INT, C_DOUBLE, C_TEXT, C_BLOB, C_BYTEA } cell_kind;

/* 24 bytes: a SQLite fetch_all of 100,000 rows x 3 columns makes 300,000 of them. */
typedef struct cell {
    union {
        int64_t i;
        double d;
        void *decoded; /* BYTEA: the bytes, decoded on first request */
    } num;
    char *text;   /* NUL-terminated; the bytes of TEXT and BLOB; lazily made for INT, DOUBLE */
    uint32_t len; /* bytes of TEXT, BLOB and decoded BYTEA (SQLite values stay below 2^31) */
    uint8_t kind;
} cell;

typedef struct chunk {
    struct chunk *next;
    size_t used, size;
    char data[];
} chunk;

typedef enum result_kind { R_PG, R_CELLS } result_kind;

struct duet_result {
    result_kind kind;
    size_t nrows, ncols;
    /* R_PG */
    PGresult *pg;
    void **bytea;       /* per cell, decoded bytea, allocated on first use */
    size_t *bytea_len;
    /* R_CELLS */
    char **colnames;
    cell **rows;
    size_t rows_cap;
    cell **blocks;
    size_t nblocks, blocks_cap;
    size_t block_rows; /* rows in blocks 1.. (block 0 holds one row) */
    cell *block_cur;   /* where the next row goes */
    size_t block_left; /* rows left in the current block */
    chunk *arena;
};

/* ------------------------------------------------------------------ */
/* Chunk cache                                                        */
/* ------------------------------------------------------------------ */

/*
 * A big SQLite result is ~10 MB of 64 KB chunks (cells and text).  Given
 * back to malloc, glibc returns that memory to the kernel, and the next
 * result page-faults it all in again: on these VMs that costs more than
 * reading the rows.  So each thread keeps up to CACHE_CHUNKS freed chunks
 * (16 MB) for its next result, freed when the thread exits.
 */
#define CHUNK_BYTES 65536
#define CACHE_CHUNKS 256

typedef struct free_chunk {
    struct free_chunk *next;
} free_chunk;

typedef struct chunk_cache {
    free_chunk *head;
    size_t n;
} chunk_cache;

static _Thread_local chunk_cache cache;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_drop(void *unused) {
    (void)unused;
    while (cache.head) {
        free_chunk *next = cache.head->next;
        free(cache.head);
        cache.head = next;
    }
    cache.n = 0;
}

static void cache_init(void) { pthread_key_create(&cache_key, cache_drop); }

static void *chunk_get(void) {
    free_chunk *c = cache.head;
    if (!c) return malloc(CHUNK_BYTES);
    cache.head = c->next;
    cache.n--;
    return c;
}

static void chunk_put(void *p) {
    if (!p) return;
    if (cache.n >= CACHE_CHUNKS) {
        free(p);
        return;
    }
    if (cache.n == 0) { /* the key's destructor empties the cache at thread exit */
        pthread_once(&cache_once, cache_init);
        pthread_setspecific(cache_key, &cache);
    }
    free_chunk *c = p;
    c->next = cache.head;
    cache.head = c;
    cache.n++;
}

/* ------------------------------------------------------------------ */
/* Arena                                                              */
/* ------------------------------------------------------------------ */

#define CHUNK_DATA (CHUNK_BYTES - sizeof(chunk))

static size_t row_bytes(const duet_result *r) { return (r->ncols ? r->ncols : 1) * sizeof(cell); }

/* Blocks after the first are cache chunks when a row fits in one. */
static bool blocks_cached(const duet_result *r) { return row_bytes(r) <= CHUNK_BYTES; }

static void *arena_alloc(duet_result *r, size_t n) {
    chunk *c = r->arena;
    n = (n + 7) & ~(size_t)7;
    if (!c || c->size - c->used < n) {
        size_t size = n > CHUNK_DATA / 4 ? n : CHUNK_DATA;
        chunk *fresh = size == CHUNK_DATA ? chunk_get() : malloc(sizeof *fresh + size);
        if (!fresh) return NULL;
        fresh->used = 0;
        fresh->size = size;
        /* A big value gets its own chunk behind the current one, which stays open. */
        if (c && size != CHUNK_DATA) {
            fresh->next = c->next;
            c->next = fresh;
            fresh->used = n;
            return fresh->data;
        }
        fresh->next = c;
        r->arena = c = fresh;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(chunk *c) {
    while (c) {
        chunk *next = c->next;
        if (c->size == CHUNK_DATA)
            chunk_put(c);
        else
            free(c);
        c = next;
    }
}

/* ------------------------------------------------------------------ */
/* Construction                                                       */
/* ------------------------------------------------------------------ */

duet_result *duet__result_from_pg(void *pgresult) {
    duet_result *r = calloc(1, sizeof *r);
    if (!r) {
        PQclear(pgresult);
        return NULL;
    }
    r->kind = R_PG;
    duet__result_reset_pg(r, pgresult);
    return r;
}

static void free_bytea_cache(duet_result *r) {
    if (!r->bytea) return;
    for (size_t i = 0; i < r->nrows * r->ncols; i++) PQfreemem(r->bytea[i]);
    free(r->bytea);
    free(r->bytea_len);
    r->bytea = NULL;
    r->bytea_len = NULL;
}

void duet__result_reset_pg(duet_result *r, void *pgresult) {
    free_bytea_cache(r);
    if (r->pg) PQclear(r->pg);
    r->pg = pgresult;
    r->nrows = pgresult ? (size_t)PQntuples(pgresult) : 0;
    r->ncols = pgresult ? (size_t)PQnfields(pgresult) : 0;
}

duet_result *duet__result_new(size_t ncols) {
    duet_result *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->kind = R_CELLS;
    r->ncols = ncols;
    /* Blocks of one cached chunk when a row fits in it; else one row a block. */
    r->block_rows = blocks_cached(r) ? CHUNK_BYTES / row_bytes(r) : 1;
    r->colnames = calloc(ncols ? ncols : 1, sizeof *r->colnames);
    if (!r->colnames) {
        free(r);
        return NULL;
    }
    return r;
}

duet_status duet__result_set_colname(duet_result *r, size_t col, const char *name) {
    free(r->colnames[col]);
    r->colnames[col] = strdup(name ? name : "");
    return r->colnames[col] ? DUET_OK : duet__err(DUET_ERR_NO_MEMORY, "out of memory");
}

/* rows[i] points at row i's cells, wherever its block is: no arithmetic per access. */
static cell *cell_ptr(const duet_result *r, size_t row, size_t col) { return &r->rows[row][col]; }

/*
 * Block 0 holds one row and later blocks hold block_rows rows, so the many
 * one-row results (iteration, fetch_val) cost one small allocation.
 */
static duet_status add_block(duet_result *r) {
    if (r->nblocks == r->blocks_cap) {
        size_t cap = r->blocks_cap ? r->blocks_cap * 2 : 4;
        cell **b = realloc(r->blocks, cap * sizeof *b);
        if (!b) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
        r->blocks = b;
        r->blocks_cap = cap;
    }
    size_t rows = r->nblocks == 0 ? 1 : r->block_rows;
    cell *b = r->nblocks > 0 && blocks_cached(r) ? chunk_get() : malloc(rows * row_bytes(r));
    if (!b) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    r->blocks[r->nblocks++] = b;
    r->block_cur = b;
    r->block_left = rows;
    return DUET_OK;
}

static void free_blocks(duet_result *r, size_t from) {
    for (size_t i = from; i < r->nblocks; i++) {
        if (i > 0 && blocks_cached(r))
            chunk_put(r->blocks[i]);
        else
            free(r->blocks[i]);
    }
    r->nblocks = from;
}

duet_status duet__result_add_row(duet_result *r) {
    if (r->nrows == r->rows_cap) {
        size_t cap = r->rows_cap ? r->rows_cap * 2 : 1;
        cell **rows = realloc(r->rows, cap * sizeof *rows);
        if (!rows) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
        r->rows = rows;
        r->rows_cap = cap;
    }
    if (r->block_left == 0) {
        duet_status st = add_block(r);
        if (st) return st;
    }
    cell *row = r->block_cur;
    r->block_cur += r->ncols;
    r->block_left--;
    memset(row, 0, r->ncols * sizeof(cell));
    r->rows[r->nrows++] = row;
    return DUET_OK;
}

void duet__result_clear_rows(duet_result *r) {
    r->nrows = 0;
    /* Keep the one-row block and one arena chunk for the next row. */
    if (r->nblocks > 0) {
        free_blocks(r, 1);
        r->block_cur = r->blocks[0];
        r->block_left = 1;
    }
    if (r->arena) {
        arena_free(r->arena->next);
        r->arena->next = NULL;
        r->arena->used = 0;
    }
}

static cell *last_cell(duet_result *r, size_t col) {
    return cell_ptr(r, r->nrows - 1, col);
}

void duet__result_set_int(duet_result *r, size_t col, int64_t v) {
    cell *c = last_cell(r, col);
    c->kind = C_INT;
    c->num.i = v;
}

void duet__result_set_double(duet_result *r, size_t col, double v) {
    cell *c = last_cell(r, col);
    c->kind = C_DOUBLE;
    c->num.d = v;
}

static duet_status set_copy(duet_result *r, size_t col, cell_kind kind, const void *data,
                            size_t len) {
    char *p = arena_alloc(r, len + 1);
    if (!p) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    if (len) memcpy(p, data, len);
    p[len] = '\0';
    cell *c = last_cell(r, col);
    c->kind = kind;
    c->len = (uint32_t)len;
    c->text = p;
    return DUET_OK;
}

duet_status duet__result_set_text(duet_result *r, size_t col, const char *text, size_t len) {
    return set_copy(r, col, C_TEXT, text, len);
}

duet_status duet__result_set_blob(duet_result *r, size_t col, const void *data, size_t len) {
    return set_copy(r, col, C_BLOB, data, len);
}

void duet_result_free(duet_result *r) {
    if (!r) return;
    free_bytea_cache(r);
    if (r->pg) PQclear(r->pg);
    for (size_t i = 0; r->colnames && i < r->ncols; i++) free(r->colnames[i]);
    free(r->colnames);
    free_blocks(r, 0);
    free(r->blocks);
    free(r->rows);
    arena_free(r->arena);
    free(r);
}

/* ------------------------------------------------------------------ */
/* Accessors                                                          */
/* ------------------------------------------------------------------ */

size_t duet_result_nrows(const duet_result *r) { return r ? r->nrows : 0; }
size_t duet_result_ncols(const duet_result *r) { return r ? r->ncols : 0; }

const char *duet_result_colname(const duet_result *r, size_t col) {
    if (!r || col >= r->ncols) return NULL;
    return r->kind == R_PG ? PQfname(r->pg, (int)col) : r->colnames[col];
}

int duet_result_colindex(const duet_result *r, const char *name) {
    for (size_t i = 0; r && name && i < r->ncols; i++)
        if (strcmp(duet_result_colname(r, i), name) == 0) return (int)i;
    return -1;
}

static bool in_range(const duet_result *r, size_t row, size_t col) {
    return r && row < r->nrows && col < r->ncols;
}

bool duet_result_isnull(const duet_result *r, size_t row, size_t col) {
    if (!in_range(r, row, col)) return true;
    if (r->kind == R_PG) return PQgetisnull(r->pg, (int)row, (int)col);
    return cell_ptr(r, row, col)->kind == C_NULL;
}

/* Shortest text that reads back as the same double (as PostgreSQL prints float8). */
static int format_double(char *buf, size_t size, double v) {
    if (isnan(v)) return snprintf(buf, size, "NaN");
    if (isinf(v)) return snprintf(buf, size, "%sInfinity", v < 0 ? "-" : "");
    for (int prec = 15; prec <= 17; prec++) {
        int n = snprintf(buf, size, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return n;
    }
    return (int)strlen(buf);
}

static const char *cell_text(duet_result *r, cell *c) {
    if (c->text || (c->kind != C_INT && c->kind != C_DOUBLE)) return c->text;
    char buf[40];
    int n = c->kind == C_INT ? snprintf(buf, sizeof buf, "%" PRId64, c->num.i)
                             : format_double(buf, sizeof buf, c->num.d);
    char *p = arena_alloc(r, (size_t)n + 1);
    if (p) memcpy(p, buf, (size_t)n + 1);
    c->text = p;
    return p;
}

const char *duet_result_text(const duet_result *r, size_t row, size_t col) {
    if (!in_range(r, row, col)) return NULL;
    if (r->kind == R_PG)
        return PQgetisnull(r->pg, (int)row, (int)col) ? NULL : PQgetvalue(r->pg, (int)row, (int)col);
    duet_result *mr = (duet_result *)r; /* lazily filled cache, see the file comment */
    return cell_text(mr, cell_ptr(r, row, col));
}

/* The common checks of the typed getters: range, NULL. */
static duet_status getter_check(const duet_result *r, size_t row, size_t col, const char *what) {
    if (!r) return duet__err(DUET_ERR_MISUSE, "%s: NULL result", what);
    if (row >= r->nrows)
        return duet__err(DUET_ERR_MISUSE, "%s: row %zu out of range (%zu rows)", what, row, r->nrows);
    if (col >= r->ncols)
        return duet__err(DUET_ERR_MISUSE, "%s: column %zu out of range (%zu columns)", what, col,
                         r->ncols);
    if (duet_result_isnull(r, row, col))
        return duet__err(DUET_ERR_MISUSE, "%s: value at row %zu, column \"%s\" is NULL", what, row,
                         duet_result_colname(r, col));
    return DUET_OK;
}

static duet_status no_convert(const duet_result *r, size_t row, size_t col, const char *type) {
    const char *t = duet_result_text(r, row, col);
    return duet__err(DUET_ERR_MISUSE, "value at row %zu, column \"%s\" is not %s: \"%.40s%s\"", row,
                     duet_result_colname(r, col), type, t ? t : "", t && strlen(t) > 40 ? "..." : "");
}

static const cell *cell_at(const duet_result *r, size_t row, size_t col) {
    return r->kind == R_CELLS ? cell_ptr(r, row, col) : NULL;
}

/* The common case of the typed getters, without the error path's checks: a native cell. */
static const cell *native_cell(const duet_result *r, size_t row, size_t col, cell_kind kind) {
    if (!r || r->kind != R_CELLS || row >= r->nrows || col >= r->ncols) return NULL;
    const cell *c = cell_ptr(r, row, col);
    return c->kind == kind ? c : NULL;
}

duet_status duet_result_int64(const duet_result *r, size_t row, size_t col, int64_t *out) {
    const cell *fast = native_cell(r, row, col, C_INT);
    if (fast) return *out = fast->num.i, DUET_OK;
    duet_status st = getter_check(r, row, col, "duet_result_int64");
    if (st) return st;
    const cell *c = cell_at(r, row, col);
    if (c && c->kind == C_INT) return *out = c->num.i, DUET_OK;
    if (c && c->kind == C_DOUBLE) {
        if (c->num.d != floor(c->num.d) || fabs(c->num.d) >= 9.2e18)
            return no_convert(r, row, col, "an integer");
        return *out = (int64_t)c->num.d, DUET_OK;
    }
    const char *t = duet_result_text(r, row, col);
    char *end;
    errno = 0;
    long long v = strtoll(t, &end, 10);
    if (errno || end == t || *end) return no_convert(r, row, col, "an integer");
    *out = v;
    return DUET_OK;
}

duet_status duet_result_double(const duet_result *r, size_t row, size_t col, double *out) {
    const cell *fast = native_cell(r, row, col, C_DOUBLE);
    if (fast) return *out = fast->num.d, DUET_OK;
    duet_status st = getter_check(r, row, col, "duet_result_double");
    if (st) return st;
    const cell *c = cell_at(r, row, col);
    if (c && c->kind == C_DOUBLE) return *out = c->num.d, DUET_OK;
    if (c && c->kind == C_INT) return *out = (double)c->num.i, DUET_OK;
    const char *t = duet_result_text(r, row, col);
    char *end;
    errno = 0;
    double v = strtod(t, &end);
    if (end == t || *end || (errno == ERANGE && isinf(v))) return no_convert(r, row, col, "a number");
    *out = v;
    return DUET_OK;
}

duet_status duet_result_bool(const duet_result *r, size_t row, size_t col, bool *out) {
    static const char *const yes[] = {"t", "true", "1", "yes", "on", NULL};
    static const char *const no[] = {"f", "false", "0", "no", "off", NULL};
    duet_status st = getter_check(r, row, col, "duet_result_bool");
    if (st) return st;
    const cell *c = cell_at(r, row, col);
    if (c && c->kind == C_INT) return *out = c->num.i != 0, DUET_OK;
    const char *t = duet_result_text(r, row, col);
    for (int i = 0; yes[i]; i++) {
        if (strcasecmp(t, yes[i]) == 0) return *out = true, DUET_OK;
        if (strcasecmp(t, no[i]) == 0) return *out = false, DUET_OK;
    }
    return no_convert(r, row, col, "a boolean");
}

/* PostgreSQL's bytea output: "\x" then two hex digits a byte (bytea_output = hex). */
static void *decode_bytea(const char *text, size_t *len) {
    unsigned char *p = PQunescapeBytea((const unsigned char *)text, len);
    return p;
}

static const void *pg_bytes(duet_result *r, size_t row, size_t col, size_t *len) {
    if (PQftype(r->pg, (int)col) != BYTEAOID) {
        *len = (size_t)PQgetlength(r->pg, (int)row, (int)col);
        return PQgetvalue(r->pg, (int)row, (int)col);
    }
    size_t i = row * r->ncols + col;
    if (!r->bytea) {
        r->bytea = calloc(r->nrows * r->ncols, sizeof *r->bytea);
        r->bytea_len = calloc(r->nrows * r->ncols, sizeof *r->bytea_len);
        if (!r->bytea || !r->bytea_len) {
            free_bytea_cache(r);
            return NULL;
        }
    }
    if (!r->bytea[i]) r->bytea[i] = decode_bytea(PQgetvalue(r->pg, (int)row, (int)col), &r->bytea_len[i]);
    *len = r->bytea_len[i];
    return r->bytea[i];
}

const void *duet_result_bytes(const duet_result *r, size_t row, size_t col, size_t *len) {
    size_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    if (!in_range(r, row, col) || duet_result_isnull(r, row, col)) return NULL;
    duet_result *mr = (duet_result *)r; /* lazily filled caches, see the file comment */
    if (r->kind == R_PG) return pg_bytes(mr, row, col, len);
    cell *c = cell_ptr(r, row, col);
    if (c->kind == C_BYTEA) {
        if (!c->num.decoded) {
            size_t n = 0;
            void *raw = decode_bytea(c->text, &n);
            char *p = raw ? arena_alloc(mr, n + 1) : NULL;
            if (p) memcpy(p, raw, n), c->num.decoded = p, c->len = (uint32_t)n;
            PQfreemem(raw);
        }
        *len = c->num.decoded ? c->len : 0;
        return c->num.decoded;
    }
    if (c->kind == C_INT || c->kind == C_DOUBLE) {
        const char *t = cell_text(mr, c);
        *len = t ? strlen(t) : 0;
        return t;
    }
    *len = c->len;
    return c->text;
}

/* ------------------------------------------------------------------ */
/* duet_fetch_val's one-value copy                                    */
/* ------------------------------------------------------------------ */

static duet_status copy_value(const duet_result *src, size_t row, size_t col, duet_result *dst) {
    if (duet_result_isnull(src, row, col)) return DUET_OK;
    if (src->kind == R_PG) {
        const char *t = PQgetvalue(src->pg, (int)row, (int)col);
        size_t n = (size_t)PQgetlength(src->pg, (int)row, (int)col);
        bool bytea = PQftype(src->pg, (int)col) == BYTEAOID;
        return set_copy(dst, 0, bytea ? C_BYTEA : C_TEXT, t, n);
    }
    const cell *c = cell_at(src, row, col);
    switch (c->kind) {
    case C_INT: duet__result_set_int(dst, 0, c->num.i); return DUET_OK;
    case C_DOUBLE: duet__result_set_double(dst, 0, c->num.d); return DUET_OK;
    case C_BLOB: return duet__result_set_blob(dst, 0, c->text, c->len);
    case C_BYTEA: return set_copy(dst, 0, C_BYTEA, c->text, strlen(c->text));
    default: return duet__result_set_text(dst, 0, c->text, c->len);
    }
}

duet_status duet__result_extract(const duet_result *src, size_t row, size_t col, duet_result **out) {
    *out = NULL;
    if (!in_range(src, row, col))
        return duet__err(DUET_ERR_MISUSE, "column %zu out of range (%zu columns)", col,
                         src ? src->ncols : 0);
    duet_result *r = duet__result_new(1);
    if (!r) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    duet_status st = duet__result_set_colname(r, 0, duet_result_colname(src, col));
    if (st == DUET_OK) st = duet__result_add_row(r);
    if (st == DUET_OK) st = copy_value(src, row, col, r);
    if (st) {
        duet_result_free(r);
        return st;
    }
    *out = r;
    return DUET_OK;
}
