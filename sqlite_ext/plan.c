/*
** plan.c: query-plan helpers, two eponymous table-valued functions.
**
**     SELECT * FROM duet_plan('SELECT * FROM t WHERE b = 1 ORDER BY c');
**       id | parent | detail
**        2 |      0 | SCAN t
**       10 |      0 | USE TEMP B-TREE FOR ORDER BY
**
**     SELECT * FROM duet_plan_advice('SELECT * FROM t WHERE b = 1 ORDER BY c');
**       severity | message                                 | suggestion
**       warning  | SCAN t reads every row of t to filter it | CREATE INDEX t_b ON t(b);
**       info     | USE TEMP B-TREE FOR ORDER BY: ...       | an index that gives ...
**
** duet_plan(sql) returns the rows of EXPLAIN QUERY PLAN for one statement,
** prepared on the calling connection (nothing is run).
**
** duet_plan_advice(sql) reads the same plan and reports, as severity,
** message and suggestion rows:
**   - a full scan (SCAN t) of a table that a WHERE or ON condition filters,
**     and an automatic index SQLite would build for every run, each with the
**     CREATE INDEX that turns it into a search;
**   - temporary b-trees for ORDER BY, GROUP BY and DISTINCT (severity info).
** The index is found as sqlite3expert does, by trying: the schema (tables,
** indexes, views) is copied into a private in-memory database, the columns
** the statement reads are learnt through an authorizer there, and for each
** one an index is created and the plan asked again; the columns whose index
** turns the scan into a search (equalities first, then one range) make the
** suggestion.  The copy holds no rows and no sqlite_stat1, so the planner
** judges as for a table of unknown size; cost: one EXPLAIN per column read.
**
** Errors name the function and the problem:
**   duet_plan: near "SELEC": syntax error
**   duet_plan: no such table: nosuch
**   duet_plan: the argument must be one SQL statement
**   duet_plan: a PRAGMA statement has no query plan
** (a PRAGMA acts as it is prepared, which duet_plan() must not do; from a
** view it could turn trusted_schema back on).
*/
#include <stddef.h>
#include <string.h>

#include "duet_ext.h"
SQLITE_EXTENSION_INIT3

#define PLAN_ID 0
#define PLAN_PARENT 1
#define PLAN_DETAIL 2
#define ADVICE_SEVERITY 0
#define ADVICE_MESSAGE 1
#define ADVICE_SUGGESTION 2
#define COL_SQL 3 /* the hidden argument column, in both tables */

/* One output row: three cells, integers or text. */
typedef struct PlanRow {
    sqlite3_int64 num[3];
    char* text[3];
} PlanRow;

typedef struct PlanRows {
    int n, cap;
    PlanRow* row;
} PlanRows;

typedef struct PlanVtab {
    sqlite3_vtab base;
    sqlite3* db;
    int advice; /* duet_plan_advice rather than duet_plan */
} PlanVtab;

typedef struct PlanCursor {
    sqlite3_vtab_cursor base;
    PlanRows rows;
    int i;
    char* sql; /* the argument, the value of the hidden column */
} PlanCursor;

static void rows_clear(PlanRows* r) {
    for (int i = 0; i < r->n; i++)
        for (int j = 0; j < 3; j++)
            sqlite3_free(r->row[i].text[j]);
    sqlite3_free(r->row);
    memset(r, 0, sizeof(*r));
}

/* Appends a row; the texts become the rows' (freed even on failure). */
static int rows_add(PlanRows* r, sqlite3_int64 a, sqlite3_int64 b, char* t0, char* t1, char* t2) {
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        PlanRow* grown = sqlite3_realloc64(r->row, sizeof(PlanRow) * cap);
        if (grown == NULL) {
            sqlite3_free(t0), sqlite3_free(t1), sqlite3_free(t2);
            return SQLITE_NOMEM;
        }
        r->row = grown;
        r->cap = cap;
    }
    PlanRow* row = &r->row[r->n++];
    row->num[0] = a;
    row->num[1] = b;
    row->num[2] = 0;
    row->text[0] = t0;
    row->text[1] = t1;
    row->text[2] = t2;
    return SQLITE_OK;
}

/* ------------------------------------------------------ EXPLAIN QUERY PLAN */

/* Prepares EXPLAIN QUERY PLAN sql on db; *pzErr gets a message on error. */
static int prepare_eqp(sqlite3* db, const char* sql, sqlite3_stmt** pStmt, char** pzErr) {
    const char* tail = NULL;
    const char* z = sql;
    while (*z == ' ' || *z == '\n' || *z == '\t' || *z == '\r')
        z++;
    if (*z == '\0') {
        *pzErr = sqlite3_mprintf("the argument must be one SQL statement");
        return SQLITE_ERROR;
    }
    /* Nothing is run, but a PRAGMA acts as it is prepared (foreign_keys,
    ** trusted_schema, cache_size...): refused before it is. */
    z = duet_skip_space(z);
    if (sqlite3_strnicmp(z, "PRAGMA", 6) == 0 && !((z[6] >= 'a' && z[6] <= 'z') ||
                                                   (z[6] >= 'A' && z[6] <= 'Z') ||
                                                   (z[6] >= '0' && z[6] <= '9') || z[6] == '_')) {
        *pzErr = sqlite3_mprintf("a PRAGMA statement has no query plan");
        return SQLITE_ERROR;
    }
    char* eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
    if (eqp == NULL)
        return SQLITE_NOMEM;
    int rc = sqlite3_prepare_v2(db, eqp, -1, pStmt, &tail);
    if (rc != SQLITE_OK) {
        *pzErr = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    } else if (*pStmt == NULL) {
        *pzErr = sqlite3_mprintf("the argument must be one SQL statement");
        rc = SQLITE_ERROR;
    } else {
        while (*tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r' || *tail == ';')
            tail++;
        if (*tail) {
            *pzErr = sqlite3_mprintf("the argument must be one SQL statement");
            sqlite3_finalize(*pStmt);
            *pStmt = NULL;
            rc = SQLITE_ERROR;
        }
    }
    sqlite3_free(eqp);
    return rc;
}

/* The plan of sql as rows (id, parent, detail). */
static int read_plan(sqlite3* db, const char* sql, PlanRows* out, char** pzErr) {
    sqlite3_stmt* s;
    int rc = prepare_eqp(db, sql, &s, pzErr);
    if (rc != SQLITE_OK)
        return rc;
    while (rc == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
        char* detail = sqlite3_mprintf("%s", sqlite3_column_text(s, 3));
        rc = detail ? rows_add(out, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1), NULL,
                               NULL, detail)
                    : SQLITE_NOMEM;
    }
    if (rc == SQLITE_OK && (rc = sqlite3_finalize(s)) != SQLITE_OK)
        *pzErr = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    else if (rc != SQLITE_OK)
        sqlite3_finalize(s);
    return rc;
}

/* ------------------------------------------------------------- what-if */

/* The columns a statement reads, learnt by an authorizer. */
typedef struct Reads {
    int n, cap;
    char **table, **column;
} Reads;

static int collect_reads(void* ctx,
                         int op,
                         const char* tab,
                         const char* col,
                         const char* db,
                         const char* trigger) {
    Reads* r = ctx;
    (void)db, (void)trigger;
    if (op != SQLITE_READ || tab == NULL || col == NULL || *col == '\0')
        return SQLITE_OK;
    if (sqlite3_strnicmp(tab, "sqlite_", 7) == 0)
        return SQLITE_OK;
    for (int i = 0; i < r->n; i++)
        if (sqlite3_stricmp(r->table[i], tab) == 0 && sqlite3_stricmp(r->column[i], col) == 0)
            return SQLITE_OK;
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        char** t = sqlite3_realloc64(r->table, sizeof(char*) * cap);
        if (t)
            r->table = t;
        char** c = t ? sqlite3_realloc64(r->column, sizeof(char*) * cap) : NULL;
        if (c == NULL)
            return SQLITE_OK; /* advice is best effort */
        r->column = c;
        r->cap = cap;
    }
    r->table[r->n] = sqlite3_mprintf("%s", tab);
    r->column[r->n] = sqlite3_mprintf("%s", col);
    if (r->table[r->n] && r->column[r->n])
        r->n++;
    return SQLITE_OK;
}

static void reads_free(Reads* r) {
    for (int i = 0; i < r->n; i++)
        sqlite3_free(r->table[i]), sqlite3_free(r->column[i]);
    sqlite3_free(r->table), sqlite3_free(r->column);
}

/* A private in-memory database with the main schema of db, no rows. */
static sqlite3* schema_copy(sqlite3* db) {
    sqlite3* copy = NULL;
    if (sqlite3_open_v2(":memory:", &copy, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        sqlite3_close(copy);
        return NULL;
    }
    sqlite3_stmt* s;
    /* Tables before the indexes and views that depend on them; virtual
    ** tables and triggers are left out (their modules are not here). */
    if (sqlite3_prepare_v2(db,
                           "SELECT sql FROM main.sqlite_schema WHERE sql IS NOT NULL "
                           "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                           "AND type IN ('table', 'index', 'view') "
                           "AND sql NOT LIKE 'CREATE VIRTUAL%' "
                           "ORDER BY type = 'view', type = 'index', rowid",
                           -1, &s, NULL) != SQLITE_OK) {
        sqlite3_close(copy);
        return NULL;
    }
    /* The copy may attach nothing, and of each entry only its first
    ** statement runs, as when SQLite reads a schema: a crafted database
    ** file could otherwise append an ATTACH and write another file. */
    sqlite3_limit(copy, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_exec(copy, "BEGIN", NULL, NULL, NULL);
    while (sqlite3_step(s) == SQLITE_ROW) {
        sqlite3_stmt* create = NULL;
        if (sqlite3_prepare_v2(copy, (const char*)sqlite3_column_text(s, 0), -1, &create, NULL) ==
            SQLITE_OK)
            sqlite3_step(create);
        sqlite3_finalize(create);
    }
    sqlite3_exec(copy, "COMMIT", NULL, NULL, NULL);
    sqlite3_finalize(s);
    return copy;
}

/* Whether any plan line of sql uses the index duet_whatif; *constraint gets
** the parenthesised part of that line, "(a=? AND b>?)". */
static int whatif_used(sqlite3* copy, const char* sql, char** constraint, char** alias) {
    PlanRows plan = {0};
    char* err = NULL;
    int used = 0;
    if (read_plan(copy, sql, &plan, &err) == SQLITE_OK) {
        for (int i = 0; i < plan.n && !used; i++) {
            const char* d = plan.row[i].text[PLAN_DETAIL];
            const char* at = strstr(d, "INDEX duet_whatif");
            if (at == NULL || strncmp(d, "SEARCH ", 7) != 0)
                continue;
            used = 1;
            const char* open = strchr(at, '(');
            if (constraint)
                *constraint = sqlite3_mprintf("%s", open ? open : "");
            const char* using = strstr(d, " USING ");
            if (using == NULL)
                using = d + strlen(d);
            if (alias)
                *alias = sqlite3_mprintf("%.*s", (int)(using - d - 7), d + 7);
        }
    }
    sqlite3_free(err);
    rows_clear(&plan);
    return used;
}

/* Tries CREATE INDEX duet_whatif ON table(cols) in the copy. */
static int whatif(sqlite3* copy,
                  const char* sql,
                  const char* table,
                  const char* cols,
                  char** constraint,
                  char** alias) {
    char* ddl = sqlite3_mprintf("CREATE INDEX duet_whatif ON \"%w\"(%s)", table, cols);
    int used = 0;
    if (ddl && sqlite3_exec(copy, ddl, NULL, NULL, NULL) == SQLITE_OK) {
        used = whatif_used(copy, sql, constraint, alias);
        sqlite3_exec(copy, "DROP INDEX duet_whatif", NULL, NULL, NULL);
    }
    sqlite3_free(ddl);
    return used;
}

/* An identifier as a person would type it: bare when it can be. */
static int ident_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static void append_ident(sqlite3_str* sb, const char* name) {
    int bare = (name[0] < '0' || name[0] > '9') && name[0] != '\0';
    for (const char* p = name; *p && bare; p++)
        bare = ident_char(*p);
    if (bare && sqlite3_keyword_check(name, (int)strlen(name)))
        bare = 0; /* select, order... */
    if (bare)
        sqlite3_str_appendall(sb, name);
    else
        sqlite3_str_appendf(sb, "\"%w\"", name);
}

/* The index for one table: the columns whose own index the planner uses,
** equalities first then one range, checked again together. */
static int advise_table(sqlite3* copy,
                        const char* sql,
                        const Reads* r,
                        const char* table,
                        const PlanRows* base,
                        PlanRows* out) {
    sqlite3_str *eq = sqlite3_str_new(NULL), *range = sqlite3_str_new(NULL);
    char* alias = NULL;
    int neq = 0, nrange = 0;
    for (int i = 0; i < r->n; i++) {
        if (sqlite3_stricmp(r->table[i], table) != 0)
            continue;
        char* quoted = sqlite3_mprintf("\"%w\"", r->column[i]);
        char *constraint = NULL, *as = NULL;
        /* A self-join: keep to the columns of the first alias helped. */
        if (quoted && whatif(copy, sql, table, quoted, &constraint, &as) &&
            (alias == NULL || (as && strcmp(as, alias) == 0))) {
            int isEq = constraint && strstr(constraint, "=?") && !strstr(constraint, "<") &&
                       !strstr(constraint, ">");
            if (isEq || nrange == 0) {
                sqlite3_str* to = isEq ? eq : range;
                if (!isEq)
                    nrange++;
                else
                    neq++;
                sqlite3_str_appendf(to, "%s%s", sqlite3_str_length(to) ? "\x1f" : "", r->column[i]);
            }
            if (alias == NULL)
                alias = as, as = NULL;
        }
        sqlite3_free(quoted), sqlite3_free(constraint), sqlite3_free(as);
    }
    char *eqs = sqlite3_str_finish(eq), *ranges = sqlite3_str_finish(range);
    int rc = SQLITE_OK;
    if (alias && (neq + nrange) > 0) {
        /* The index columns, and the suggestion that creates them. */
        sqlite3_str *cols = sqlite3_str_new(NULL), *name = sqlite3_str_new(NULL),
                    *show = sqlite3_str_new(NULL);
        sqlite3_str_appendall(name, table);
        char* all = sqlite3_mprintf("%s%s%s", eqs ? eqs : "", eqs && ranges ? "\x1f" : "",
                                    ranges ? ranges : "");
        int k = 0;
        for (char* p = all; p && *p; k++) {
            char* end = strchr(p, '\x1f');
            if (end)
                *end = '\0';
            sqlite3_str_appendf(cols, "%s\"%w\"", k ? ", " : "", p);
            sqlite3_str_appendf(name, "_%s", p);
            if (k)
                sqlite3_str_appendall(show, ", ");
            append_ident(show, p);
            p = end ? end + 1 : NULL;
        }
        sqlite3_free(all);
        char *colsql = sqlite3_str_finish(cols), *idx = sqlite3_str_finish(name),
             *colshow = sqlite3_str_finish(show);
        /* Several columns: keep them only if the planner uses them together. */
        if (k > 1 && !whatif(copy, sql, table, colsql, NULL, NULL)) {
            char* first = sqlite3_mprintf("%s", eqs ? eqs : ranges);
            char* cut = first ? strchr(first, '\x1f') : NULL;
            if (cut)
                *cut = '\0';
            sqlite3_free(idx), sqlite3_free(colshow);
            idx = sqlite3_mprintf("%s_%s", table, first);
            sqlite3_str* s1 = sqlite3_str_new(NULL);
            append_ident(s1, first ? first : "");
            colshow = sqlite3_str_finish(s1);
            sqlite3_free(first);
        }
        /* What the base plan did with the table: a scan, an automatic index,
        ** or already a search (an index as good exists: nothing to say). */
        const char* how = NULL;
        size_t na = strlen(alias);
        for (int i = 0; i < base->n && how == NULL; i++) {
            const char* d = base->row[i].text[PLAN_DETAIL];
            if (strncmp(d, "SCAN ", 5) == 0 && strncmp(d + 5, alias, na) == 0 &&
                (d[5 + na] == '\0' || d[5 + na] == ' '))
                how = "scan";
            else if (strncmp(d, "SEARCH ", 7) == 0 && strncmp(d + 7, alias, na) == 0 &&
                     d[7 + na] == ' ' && strstr(d, " USING AUTOMATIC "))
                how = "automatic";
        }
        if (how == NULL) {
            sqlite3_free(colsql), sqlite3_free(idx), sqlite3_free(colshow);
            sqlite3_free(eqs), sqlite3_free(ranges), sqlite3_free(alias);
            return SQLITE_OK;
        }
        sqlite3_str* sug = sqlite3_str_new(NULL);
        sqlite3_str_appendall(sug, "CREATE INDEX ");
        /* The index name: table and columns, spaces and the like as '_'. */
        for (char* q = idx; q && *q; q++)
            if (!ident_char(*q))
                *q = '_';
        append_ident(sug, idx ? idx : "");
        sqlite3_str_appendall(sug, " ON ");
        append_ident(sug, table);
        sqlite3_str_appendf(sug, "(%s);", colshow ? colshow : "");
        char* msg =
            strcmp(how, "scan") == 0
                ? sqlite3_mprintf("SCAN %s reads every row of %s to filter it", alias, table)
                : sqlite3_mprintf("SEARCH %s builds an automatic index on %s for every run", alias,
                                  table);
        rc = rows_add(out, 0, 0, sqlite3_mprintf("warning"), msg, sqlite3_str_finish(sug));
        sqlite3_free(colsql), sqlite3_free(idx), sqlite3_free(colshow);
    }
    sqlite3_free(eqs), sqlite3_free(ranges), sqlite3_free(alias);
    return rc;
}

/* Index advice for every table the statement reads, if the plan scans. */
static int advise_indexes(sqlite3* db, const char* sql, const PlanRows* base, PlanRows* out) {
    int scans = 0;
    for (int i = 0; i < base->n; i++) {
        const char* d = base->row[i].text[PLAN_DETAIL];
        if ((strncmp(d, "SCAN ", 5) == 0 && strncmp(d, "SCAN CONSTANT", 13) != 0) ||
            strstr(d, "AUTOMATIC"))
            scans = 1;
    }
    if (!scans)
        return SQLITE_OK;
    sqlite3* copy = schema_copy(db);
    if (copy == NULL)
        return SQLITE_OK; /* advice is best effort */
    Reads r = {0};
    sqlite3_set_authorizer(copy, collect_reads, &r);
    sqlite3_stmt* s = NULL;
    int ok = sqlite3_prepare_v2(copy, sql, -1, &s, NULL) == SQLITE_OK;
    sqlite3_finalize(s);
    sqlite3_set_authorizer(copy, NULL, NULL);
    int rc = SQLITE_OK;
    for (int i = 0; ok && rc == SQLITE_OK && i < r.n; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = sqlite3_stricmp(r.table[j], r.table[i]) == 0;
        if (!seen)
            rc = advise_table(copy, sql, &r, r.table[i], base, out);
    }
    reads_free(&r);
    sqlite3_close(copy);
    return rc;
}

/* Rows for the temporary b-trees of the plan. */
static int advise_btrees(const PlanRows* base, PlanRows* out) {
    static const struct {
        const char *what, *suggestion;
    } kinds[] = {
        {"ORDER BY",
         "an index whose columns match the ORDER BY lets SQLite read the rows in order"},
        {"GROUP BY",
         "an index on the GROUP BY columns lets SQLite read each group's rows together"},
        {"DISTINCT", "an index on the DISTINCT columns lets SQLite skip duplicates as it reads"},
    };
    int rc = SQLITE_OK;
    for (int i = 0; rc == SQLITE_OK && i < base->n; i++) {
        const char* d = base->row[i].text[PLAN_DETAIL];
        if (strncmp(d, "USE TEMP B-TREE FOR ", 20) != 0)
            continue;
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            if (strstr(d, kinds[k].what) == NULL)
                continue;
            rc = rows_add(out, 0, 0, sqlite3_mprintf("info"),
                          sqlite3_mprintf("%s: the rows are sorted in a temporary b-tree", d),
                          sqlite3_mprintf("%s", kinds[k].suggestion));
            break;
        }
    }
    return rc;
}

static int read_advice(sqlite3* db, const char* sql, PlanRows* out, char** pzErr) {
    PlanRows base = {0};
    int rc = read_plan(db, sql, &base, pzErr);
    if (rc == SQLITE_OK)
        rc = advise_indexes(db, sql, &base, out);
    if (rc == SQLITE_OK)
        rc = advise_btrees(&base, out);
    rows_clear(&base);
    return rc;
}

/* ------------------------------------------------------- virtual table */

static int plan_connect(sqlite3* db,
                        void* aux,
                        int argc,
                        const char* const* argv,
                        sqlite3_vtab** ppVtab,
                        char** pzErr) {
    (void)argc, (void)argv, (void)pzErr;
    int advice = aux != NULL;
    int rc = sqlite3_declare_vtab(
        db, advice ? "CREATE TABLE x(severity TEXT, message TEXT, suggestion TEXT, sql HIDDEN)"
                   : "CREATE TABLE x(id INTEGER, parent INTEGER, detail TEXT, sql HIDDEN)");
    if (rc != SQLITE_OK)
        return rc;
    PlanVtab* v = sqlite3_malloc(sizeof(*v));
    if (v == NULL)
        return SQLITE_NOMEM;
    memset(v, 0, sizeof(*v));
    v->db = db;
    v->advice = advice;
    sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS);
    *ppVtab = &v->base;
    return SQLITE_OK;
}

static int plan_disconnect(sqlite3_vtab* vtab) {
    sqlite3_free(vtab);
    return SQLITE_OK;
}

static int plan_open(sqlite3_vtab* vtab, sqlite3_vtab_cursor** ppCursor) {
    (void)vtab;
    PlanCursor* c = sqlite3_malloc(sizeof(*c));
    if (c == NULL)
        return SQLITE_NOMEM;
    memset(c, 0, sizeof(*c));
    *ppCursor = &c->base;
    return SQLITE_OK;
}

static int plan_close(sqlite3_vtab_cursor* cur) {
    PlanCursor* c = (PlanCursor*)cur;
    rows_clear(&c->rows);
    sqlite3_free(c->sql);
    sqlite3_free(c);
    return SQLITE_OK;
}

/* The statement comes from the hidden sql column, which must be given. */
static int plan_best_index(sqlite3_vtab* vtab, sqlite3_index_info* info) {
    (void)vtab;
    int found = 0;
    for (int i = 0; i < info->nConstraint; i++) {
        const struct sqlite3_index_constraint* k = &info->aConstraint[i];
        if (k->iColumn != COL_SQL || k->op != SQLITE_INDEX_CONSTRAINT_EQ)
            continue;
        if (!k->usable)
            return SQLITE_CONSTRAINT;
        if (found)
            continue; /* sql = 'a' AND sql = 'b': SQLite checks the others */
        info->aConstraintUsage[i].argvIndex = 1;
        info->aConstraintUsage[i].omit = 1;
        found = 1;
    }
    /* Without the argument xFilter reports the error: another plan of the
    ** same query may still give it. */
    info->estimatedCost = found ? 1000 : 1e12;
    info->estimatedRows = 10;
    return SQLITE_OK;
}

static int plan_filter(sqlite3_vtab_cursor* cur,
                       int idxNum,
                       const char* idxStr,
                       int argc,
                       sqlite3_value** argv) {
    PlanCursor* c = (PlanCursor*)cur;
    PlanVtab* v = (PlanVtab*)cur->pVtab;
    const char* fn = v->advice ? "duet_plan_advice" : "duet_plan";
    (void)idxNum, (void)idxStr;
    rows_clear(&c->rows);
    sqlite3_free(c->sql);
    c->sql = NULL;
    c->i = 0;
    if (argc == 0) {
        sqlite3_free(v->base.zErrMsg);
        v->base.zErrMsg = sqlite3_mprintf("%s: the SQL statement argument is missing", fn);
        return SQLITE_ERROR;
    }
    const char* sql = (const char*)sqlite3_value_text(argv[0]);
    if (sql == NULL)
        return SQLITE_OK; /* NULL: no rows, like other functions */
    if ((c->sql = sqlite3_mprintf("%s", sql)) == NULL)
        return SQLITE_NOMEM;
    char* err = NULL;
    int rc =
        v->advice ? read_advice(v->db, sql, &c->rows, &err) : read_plan(v->db, sql, &c->rows, &err);
    if (rc != SQLITE_OK) {
        sqlite3_free(v->base.zErrMsg);
        v->base.zErrMsg = sqlite3_mprintf("%s: %s", fn, err ? err : sqlite3_errstr(rc));
        rows_clear(&c->rows);
        rc = rc == SQLITE_NOMEM ? SQLITE_NOMEM : SQLITE_ERROR;
    }
    sqlite3_free(err);
    return rc;
}

static int plan_next(sqlite3_vtab_cursor* cur) {
    ((PlanCursor*)cur)->i++;
    return SQLITE_OK;
}

static int plan_eof(sqlite3_vtab_cursor* cur) {
    PlanCursor* c = (PlanCursor*)cur;
    return c->i >= c->rows.n;
}

static int plan_column(sqlite3_vtab_cursor* cur, sqlite3_context* ctx, int col) {
    PlanCursor* c = (PlanCursor*)cur;
    PlanVtab* v = (PlanVtab*)cur->pVtab;
    const PlanRow* row = &c->rows.row[c->i];
    if (col == COL_SQL) {
        sqlite3_result_text(ctx, c->sql, -1, SQLITE_TRANSIENT);
        return SQLITE_OK;
    }
    if (!v->advice && col != PLAN_DETAIL)
        sqlite3_result_int64(ctx, row->num[col]);
    else
        sqlite3_result_text(ctx, row->text[col], -1, SQLITE_TRANSIENT);
    return SQLITE_OK;
}

static int plan_rowid(sqlite3_vtab_cursor* cur, sqlite3_int64* pRowid) {
    *pRowid = ((PlanCursor*)cur)->i + 1;
    return SQLITE_OK;
}

static sqlite3_module planModule = {
    .iVersion = 0,
    .xConnect = plan_connect,
    .xBestIndex = plan_best_index,
    .xDisconnect = plan_disconnect,
    .xOpen = plan_open,
    .xClose = plan_close,
    .xFilter = plan_filter,
    .xNext = plan_next,
    .xEof = plan_eof,
    .xColumn = plan_column,
    .xRowid = plan_rowid,
};

int duet_plan_register(sqlite3* db, DuetConn* c) {
    (void)c;
    /* pAux tells the two apart: NULL for duet_plan. */
    static int adviceTag;
    int rc = sqlite3_create_module(db, "duet_plan", &planModule, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_module(db, "duet_plan_advice", &planModule, &adviceTag);
    return rc;
}
