/*
 * cli.c — the duet command: libduet for people who do not write C.
 *
 *   duet query [--url URL | --name NAME] [--format text|csv|json] [-p name=value]... SQL
 *   duet exec  [...] SQL
 *   duet ping  [--url URL | --name NAME]
 *   duet plan  [...] [--analyze] SQL
 *   duet upsert [...] [--conflict col,col] TABLE JSON_ROW
 *
 * The database comes from --url, or --name looked up in DUET_DATABASES
 * ("default=sqlite:///a.db;analytics=postgresql://..."), or DATABASE_URL.
 * query prints an aligned table (text), CSV or a JSON array; csv and json
 * stream the rows (constant memory), text reads them all to align columns.
 * plan and upsert use the duet extension when the database has it
 * (PostgreSQL: CREATE EXTENSION duet; SQLite: the URL's extension=PATH);
 * the SQL text, table and row are always bound, never pasted into SQL.
 * Exit status: 0 success, 1 database error (one line on stderr, plus the
 * server's DETAIL and HINT when there are some), 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duet.h"

typedef enum format { FMT_TEXT, FMT_CSV, FMT_JSON } format;

typedef struct options {
    const char *command;
    const char *url;
    const char *name;
    format fmt;
    const char *sql;
    const char *row;      /* upsert's JSON row */
    const char *conflict; /* upsert --conflict */
    bool analyze;         /* plan --analyze */
    int nparams;          /* -p and -a given */
    duet_params *params;
} options;

static const char usage[] =
    "usage: duet query|exec|ping [--url URL | --name NAME] [--format text|csv|json]\n"
    "                            [-p NAME=VALUE]... [-a VALUE]... [SQL]\n"
    "       duet plan [--url URL | --name NAME] [--format F] [--analyze] [SQL]\n"
    "       duet upsert [--url URL | --name NAME] [--format F] [--conflict COL,COL]\n"
    "                   TABLE [JSON_ROW]\n"
    "\n"
    "  query   run SQL and print its rows (aligned text, CSV or JSON)\n"
    "  exec    run SQL and print the number of rows it changed\n"
    "  ping    check that the database answers\n"
    "  plan    show SQL's plan: duet.plan_nodes and duet.plan_advice when the\n"
    "          PostgreSQL extension is installed, else EXPLAIN; on SQLite\n"
    "          EXPLAIN QUERY PLAN, plus duet_plan_advice with extension=PATH\n"
    "  upsert  insert or update one row given as a JSON object; prints row, inserted\n"
    "          (needs CREATE EXTENSION duet, or extension=PATH on a SQLite URL)\n"
    "\n"
    "  --url URL        postgresql://user:pass@host:5432/db?sslmode=require,\n"
    "                   sqlite:///relative.db, sqlite:////abs.db, sqlite:///:memory:\n"
    "  --name NAME      a connection listed in DUET_DATABASES (name=url;name=url)\n"
    "  --format F       text (default), csv or json (json values are strings or null)\n"
    "  -p NAME=VALUE    bind :NAME to the text VALUE\n"
    "  -a VALUE         bind the next positional parameter (? or $n) to VALUE\n"
    "  --analyze        plan: run the statement (PostgreSQL; changes are rolled back)\n"
    "  --conflict COLS  upsert: the unique key to match (default: the primary key)\n"
    "  SQL              the statement; read from standard input when absent\n"
    "  JSON_ROW         upsert's row; read from standard input when absent\n"
    "\n"
    "Without --url or --name: DATABASE_URL, else the \"default\" entry of DUET_DATABASES.\n";

static int fail_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "duet: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return 2;
}

/* One line for the failure, then the server's detail and hint. */
static int fail_db(duet_status st) {
    fprintf(stderr, "duet: %s error: %s\n", duet_status_name(st), duet_errmsg());
    if (*duet_errdetail()) fprintf(stderr, "DETAIL: %s\n", duet_errdetail());
    if (*duet_errhint()) fprintf(stderr, "HINT: %s\n", duet_errhint());
    return 1;
}

/* ------------------------------------------------------------------ */
/* Arguments and the database URL                                     */
/* ------------------------------------------------------------------ */

static int bind_arg(options *o, const char *flag, const char *value) {
    duet_status st;
    if (strcmp(flag, "-a") == 0) {
        st = duet_bind_text(o->params, NULL, value);
    } else {
        const char *eq = strchr(value, '=');
        if (!eq) return fail_usage("-p wants NAME=VALUE, got \"%s\"", value);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(eq - value), value);
        st = duet_bind_text(o->params, name, eq + 1);
    }
    if (st) return fail_usage("%s", duet_errmsg());
    o->nparams++;
    return 0;
}

/* query, exec and plan take SQL; upsert takes TABLE then JSON_ROW. */
static int positional(options *o, const char *a) {
    bool upsert = !strcmp(o->command, "upsert");
    if (!o->sql) o->sql = a;
    else if (upsert && !o->row) o->row = a;
    else if (upsert) return fail_usage("%s", "upsert takes TABLE and one JSON_ROW (quote it)");
    else return fail_usage("%s", "one SQL statement at a time (quote it)");
    return 0;
}

/* Options that only one command understands. */
static int check_options(const options *o) {
    static const char *const commands[] = {"query", "exec", "ping", "plan", "upsert"};
    bool known = false;
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        known |= !strcmp(o->command, commands[i]);
    if (!known)
        return fail_usage("unknown command \"%s\" (query, exec, ping, plan or upsert)", o->command);
    bool plan = !strcmp(o->command, "plan"), upsert = !strcmp(o->command, "upsert");
    if (o->analyze && !plan) return fail_usage("%s", "--analyze is for plan");
    if (o->conflict && !upsert) return fail_usage("%s", "--conflict is for upsert");
    if (o->nparams && (plan || upsert)) return fail_usage("%s takes no -p or -a", o->command);
    if (upsert && !o->sql) return fail_usage("%s", "upsert needs a TABLE");
    return 0;
}

static int parse_args(int argc, char **argv, options *o) {
    if (argc < 2) return fail_usage("%s", "missing command");
    o->command = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool takes = !strcmp(a, "--url") || !strcmp(a, "--name") || !strcmp(a, "--format") ||
                     !strcmp(a, "-p") || !strcmp(a, "-a") || !strcmp(a, "--conflict");
        if (takes && i + 1 >= argc) return fail_usage("%s needs a value", a);
        if (!strcmp(a, "--url")) {
            o->url = argv[++i];
        } else if (!strcmp(a, "--name")) {
            o->name = argv[++i];
        } else if (!strcmp(a, "--format")) {
            const char *f = argv[++i];
            if (!strcmp(f, "text")) o->fmt = FMT_TEXT;
            else if (!strcmp(f, "csv")) o->fmt = FMT_CSV;
            else if (!strcmp(f, "json")) o->fmt = FMT_JSON;
            else return fail_usage("unknown format \"%s\" (text, csv or json)", f);
        } else if (!strcmp(a, "-p") || !strcmp(a, "-a")) {
            int rc = bind_arg(o, a, argv[++i]);
            if (rc) return rc;
        } else if (!strcmp(a, "--conflict")) {
            o->conflict = argv[++i];
        } else if (!strcmp(a, "--analyze")) {
            o->analyze = true;
        } else if (a[0] == '-' && a[1] == '-') {
            return fail_usage("unknown option %s", a);
        } else {
            int rc = positional(o, a);
            if (rc) return rc;
        }
    }
    if (o->url && o->name) return fail_usage("%s", "give --url or --name, not both");
    return check_options(o);
}

/* Finds name in "name=url;name=url" (newlines separate entries too); a new string or NULL. */
static char *lookup_name(const char *list, const char *name) {
    size_t nlen = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ";\n");
        while (n && (*p == ' ' || *p == '\t')) p++, n--;
        if (n > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            char *url = strndup(p + nlen + 1, n - nlen - 1);
            size_t l = url ? strlen(url) : 0;
            while (l && (url[l - 1] == ' ' || url[l - 1] == '\r')) url[--l] = '\0';
            return url;
        }
        p += n + (p[n] != '\0');
    }
    return NULL;
}

/* The names DUET_DATABASES lists, for the error message. */
static void list_names(const char *list, char *out, size_t size) {
    out[0] = '\0';
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ";\n"), eq = strcspn(p, "=");
        if (eq < n && eq > 0)
            snprintf(out + strlen(out), size - strlen(out), "%s%.*s", out[0] ? ", " : "", (int)eq, p);
        p += n + (p[n] != '\0');
    }
}

static int resolve_url(const options *o, char **url) {
    const char *list = getenv("DUET_DATABASES");
    *url = NULL;
    if (o->url) {
        *url = strdup(o->url);
    } else if (o->name) {
        if (!list || !*list) return fail_usage("--name %s: DUET_DATABASES is not set", o->name);
        *url = lookup_name(list, o->name);
        if (!*url) {
            char names[512];
            list_names(list, names, sizeof names);
            fprintf(stderr, "duet: no connection named \"%s\" in DUET_DATABASES (known: %s)\n",
                    o->name, names[0] ? names : "none");
            return 2;
        }
    } else if (getenv("DATABASE_URL") && *getenv("DATABASE_URL")) {
        *url = strdup(getenv("DATABASE_URL"));
    } else if (list && (*url = lookup_name(list, "default"))) {
        return 0;
    } else {
        return fail_usage("%s", "no database: give --url or --name, or set DATABASE_URL");
    }
    return *url ? 0 : fail_usage("%s", "out of memory");
}

/* A one-shot command needs one connection, whatever the URL's pool says. */
static duet_status open_db(const char *url, const char *name, duet_db **db) {
    duet_config *cfg;
    duet_status st = duet_config_parse(url, &cfg);
    if (st) return st;
    st = duet_config_set(cfg, "min_connections", "1");
    if (st == DUET_OK) st = duet_open_config(name ? name : "default", cfg, db);
    duet_config_free(cfg);
    return st;
}

static char *read_stdin(void) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    if (buf) buf[len] = '\0';
    return buf;
}

/* ------------------------------------------------------------------ */
/* Output                                                             */
/* ------------------------------------------------------------------ */

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width(const char *s) {
    size_t w = 0;
    for (; s && *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80) w++;
    return w;
}

static void pad(const char *s, size_t w, bool last) {
    fputs(s ? s : "", stdout);
    if (!last)
        for (size_t i = width(s); i < w; i++) putchar(' ');
}

/* The columns to print: all of r's (cols NULL), or those cols lists. */
typedef struct view {
    const duet_result *r;
    const size_t *cols;
    size_t nc;
} view;

static view all_columns(const duet_result *r) {
    return (view){.r = r, .cols = NULL, .nc = duet_result_ncols(r)};
}

static const char *cell(view v, size_t row, size_t c) {
    return duet_result_text(v.r, row, v.cols ? v.cols[c] : c);
}

static const char *colname(view v, size_t c) {
    return duet_result_colname(v.r, v.cols ? v.cols[c] : c);
}

static void print_text(view v) {
    size_t nc = v.nc, nr = duet_result_nrows(v.r);
    size_t *w = calloc(nc ? nc : 1, sizeof *w);
    if (!w) return;
    for (size_t c = 0; c < nc; c++) {
        w[c] = width(colname(v, c));
        for (size_t i = 0; i < nr; i++) {
            size_t cw = width(cell(v, i, c));
            if (cw > w[c]) w[c] = cw;
        }
    }
    for (size_t c = 0; c < nc; c++) {
        fputs(c ? " | " : " ", stdout);
        pad(colname(v, c), w[c], c + 1 == nc);
    }
    putchar('\n');
    for (size_t c = 0; c < nc; c++) {
        if (c) putchar('+');
        for (size_t i = 0; i < w[c] + 2; i++) putchar('-');
    }
    putchar('\n');
    for (size_t i = 0; i < nr; i++) {
        for (size_t c = 0; c < nc; c++) {
            fputs(c ? " | " : " ", stdout);
            pad(cell(v, i, c), w[c], c + 1 == nc);
        }
        putchar('\n');
    }
    printf("(%zu row%s)\n", nr, nr == 1 ? "" : "s");
    free(w);
}

static void csv_field(const char *s) {
    if (!s) return;
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        if (*s == '"') putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static void json_string(const char *s) {
    if (!s) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void print_row(view v, size_t i, format fmt, bool first) {
    if (fmt == FMT_JSON) fputs(first ? "  {" : ",\n  {", stdout);
    for (size_t c = 0; c < v.nc; c++) {
        if (fmt == FMT_CSV) {
            if (c) putchar(',');
            csv_field(cell(v, i, c));
        } else {
            if (c) fputs(", ", stdout);
            json_string(colname(v, c));
            fputs(": ", stdout);
            json_string(cell(v, i, c));
        }
    }
    fputs(fmt == FMT_CSV ? "\n" : "}", stdout);
}

static void csv_header(view v) {
    for (size_t c = 0; c < v.nc; c++) {
        if (c) putchar(',');
        csv_field(colname(v, c));
    }
    putchar('\n');
}

/* A fetched result in any format; json without the final newline. */
static void print_view(view v, format fmt) {
    size_t nr = duet_result_nrows(v.r);
    if (fmt == FMT_TEXT) {
        print_text(v);
        return;
    }
    if (fmt == FMT_CSV) csv_header(v);
    else fputs("[\n", stdout);
    for (size_t i = 0; i < nr; i++) print_row(v, i, fmt, i == 0);
    if (fmt == FMT_JSON) fputs(nr ? "\n]" : "]", stdout);
}

/* csv and json stream: a row is printed as soon as it arrives. */
static duet_status stream(duet_db *db, const options *o) {
    duet_rows *rows;
    const duet_result *row;
    duet_status st = duet_iterate(db, o->sql, o->params, &rows);
    if (st) return st;
    bool first = true;
    if (o->fmt == FMT_JSON) fputs("[\n", stdout);
    while ((st = duet_rows_next(rows, &row)) == DUET_ROW) {
        if (first && o->fmt == FMT_CSV) csv_header(all_columns(row));
        print_row(all_columns(row), 0, o->fmt, first);
        first = false;
    }
    duet_rows_close(rows);
    if (o->fmt == FMT_JSON) fputs(first ? "]\n" : "\n]\n", stdout);
    return st == DUET_DONE ? DUET_OK : st;
}

/* ------------------------------------------------------------------ */
/* Commands                                                           */
/* ------------------------------------------------------------------ */

static duet_status cmd_query(duet_db *db, const options *o) {
    if (o->fmt != FMT_TEXT) return stream(db, o);
    duet_result *r;
    duet_status st = duet_fetch_all(db, o->sql, o->params, &r);
    if (st == DUET_OK) print_text(all_columns(r));
    duet_result_free(r);
    return st;
}

static duet_status cmd_exec(duet_db *db, const options *o) {
    int64_t affected, last_id;
    duet_status st = duet_execute(db, o->sql, o->params, &affected, &last_id);
    if (st) return st;
    if (o->fmt == FMT_JSON)
        printf("{\"affected\": %lld, \"last_id\": %lld}\n", (long long)affected, (long long)last_id);
    else if (o->fmt == FMT_CSV)
        printf("affected,last_id\n%lld,%lld\n", (long long)affected, (long long)last_id);
    else
        printf("OK, %lld row%s affected\n", (long long)affected, affected == 1 ? "" : "s");
    return DUET_OK;
}

static duet_status cmd_ping(duet_db *db, const char *url) {
    duet_status st = duet_ping(db);
    if (st) return st;
    duet_config *cfg;
    char *d = NULL;
    if (duet_config_parse(url, &cfg) == DUET_OK) {
        d = duet_config_describe(cfg);
        duet_config_free(cfg);
    }
    printf("ok: %s\n", d ? d : duet_db_name(db));
    duet_free(d);
    return DUET_OK;
}

/* ------------------------------------------------------------------ */
/* plan and upsert                                                    */
/* ------------------------------------------------------------------ */

/*
 * Whether the duet extension is there: installed (PostgreSQL) or loaded (SQLite).
 * to_regprocedure, not to_regproc: plan_nodes is overloaded, and to_regproc
 * gives NULL for an ambiguous name.
 */
static duet_status has_extension(duet_db *db, bool *has) {
    const char *sql =
        duet_db_backend(db) == DUET_POSTGRESQL
            ? "SELECT to_regprocedure('duet.plan_nodes(jsonb)') IS NOT NULL"
            : "SELECT count(*) > 0 FROM pragma_function_list WHERE name = 'duet_upsert'";
    duet_result *r = NULL;
    duet_status st = duet_fetch_val(db, sql, NULL, 0, &r);
    if (st == DUET_OK) st = duet_result_bool(r, 0, 0, has);
    duet_result_free(r);
    return st;
}

/* "EXPLAIN ANALYZE " + sql: the statement itself, explained (no other SQL around it). */
static char *prefixed(const char *prefix, const char *sql) {
    size_t n = strlen(prefix) + strlen(sql) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", prefix, sql);
    return s;
}

/* Runs sql on the calling thread's connection inside BEGIN ... ROLLBACK. */
static duet_status fetch_rolled_back(duet_db *db, const char *sql, duet_result **out) {
    duet_status st = duet_begin(db);
    if (st) return st;
    st = duet_fetch_all(db, sql, NULL, out);
    duet_status rb = duet_rollback(db);
    return st ? st : rb;
}

static duet_status fetch_prefixed(duet_db *db, const char *prefix, const char *sql, bool rollback,
                                  duet_result **out) {
    char *full = prefixed(prefix, sql);
    if (!full) return DUET_ERR_NO_MEMORY;
    duet_status st =
        rollback ? fetch_rolled_back(db, full, out) : duet_fetch_all(db, full, NULL, out);
    free(full);
    return st;
}

/* query with text as $1 (or ?), and *analyze as $2 when given. */
static duet_status fetch_bound(duet_db *db, const char *query, const char *text,
                               const bool *analyze, duet_result **out) {
    duet_params *p = duet_params_new();
    if (!p) return DUET_ERR_NO_MEMORY;
    duet_status st = duet_bind_text(p, NULL, text);
    if (st == DUET_OK && analyze) st = duet_bind_bool(p, NULL, *analyze);
    if (st == DUET_OK) st = duet_fetch_all(db, query, p, out);
    duet_params_free(p);
    return st;
}

/* Nodes, then advice when there is some (json: one object holding both). */
static void print_plan(view nodes, const duet_result *advice, format fmt) {
    bool more = advice && duet_result_nrows(advice) > 0;
    if (fmt == FMT_JSON) fputs("{\"plan\": ", stdout);
    print_view(nodes, fmt);
    if (fmt == FMT_JSON) fputs(", \"advice\": ", stdout);
    if (more && fmt != FMT_JSON) putchar('\n');
    if (more) print_view(all_columns(advice), fmt);
    else if (fmt == FMT_JSON) fputs("[]", stdout);
    if (fmt == FMT_JSON) fputs("}\n", stdout);
}

/*
 * The statement is explained once, by duet.explain (so --analyze runs it once,
 * in a subtransaction the extension rolls back): the SQL stays a bound value,
 * never pasted, and VERBOSE gives the schema-qualified relations that
 * duet.plan_nodes(query) would show.  Both readers take that plan.
 */
static duet_status plan_pg(duet_db *db, const options *o, bool ext, duet_result **nodes,
                           duet_result **advice) {
    if (!ext) {
        const char *explain = o->analyze ? "EXPLAIN ANALYZE " : "EXPLAIN ";
        return fetch_prefixed(db, explain, o->sql, o->analyze, nodes);
    }
    duet_result *plan = NULL;
    duet_status st = fetch_bound(db, "SELECT duet.explain($1, $2, verbose => true)::text", o->sql,
                                 &o->analyze, &plan);
    const char *json = st == DUET_OK ? duet_result_text(plan, 0, 0) : NULL;
    if (st == DUET_OK)
        st = fetch_bound(db, "SELECT * FROM duet.plan_nodes($1::jsonb)", json, NULL, nodes);
    if (st == DUET_OK)
        st = fetch_bound(db, "SELECT * FROM duet.plan_advice($1::jsonb)", json, NULL, advice);
    duet_result_free(plan);
    return st;
}

static duet_status plan_sqlite(duet_db *db, const options *o, bool ext, duet_result **nodes,
                               duet_result **advice) {
    duet_status st = fetch_prefixed(db, "EXPLAIN QUERY PLAN ", o->sql, false, nodes);
    if (st == DUET_OK && ext)
        st = fetch_bound(db, "SELECT * FROM duet_plan_advice(?)", o->sql, NULL, advice);
    return st;
}

/* EXPLAIN QUERY PLAN's id, parent, detail (not its "notused"). */
static view sqlite_plan_view(const duet_result *r, size_t cols[3]) {
    const char *names[3] = {"id", "parent", "detail"};
    for (size_t c = 0; c < 3; c++) {
        int i = duet_result_colindex(r, names[c]);
        if (i < 0) return all_columns(r);
        cols[c] = (size_t)i;
    }
    return (view){.r = r, .cols = cols, .nc = 3};
}

static int cmd_plan(duet_db *db, const options *o) {
    bool pg = duet_db_backend(db) == DUET_POSTGRESQL, ext = false;
    if (o->analyze && !pg)
        return fail_usage("%s", "--analyze is for PostgreSQL (SQLite has no EXPLAIN ANALYZE)");
    duet_result *nodes = NULL, *advice = NULL;
    duet_status st = has_extension(db, &ext);
    if (st == DUET_OK)
        st = pg ? plan_pg(db, o, ext, &nodes, &advice) : plan_sqlite(db, o, ext, &nodes, &advice);
    size_t cols[3];
    if (st == DUET_OK)
        print_plan(pg ? all_columns(nodes) : sqlite_plan_view(nodes, cols), advice, o->fmt);
    duet_result_free(nodes);
    duet_result_free(advice);
    return st ? fail_db(st) : 0;
}

/* "a, b" as the JSON array ["a","b"] (duet_upsert's conflict_columns). */
static char *json_columns(const char *list) {
    char *out = malloc(strlen(list) * 4 + 8), *w = out;
    if (!out) return NULL;
    *w++ = '[';
    for (const char *p = list;; p++) {
        size_t n = strcspn(p, ",");
        const char *e = p + n;
        while (p < e && *p == ' ') p++;
        while (e > p && e[-1] == ' ') e--;
        w += sprintf(w, "%s\"", w - out > 1 ? "," : "");
        for (; p < e; p++) w += sprintf(w, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
        *w++ = '"';
        p += strcspn(p, ",");
        if (!*p) break;
    }
    strcpy(w, "]");
    return out;
}

static const char upsert_pg_sql[] =
    "SELECT \"row\", inserted FROM duet.upsert($1::regclass, $2::jsonb, "
    "regexp_split_to_array(btrim($3), '\\s*,\\s*'))";

/* Materialized: duet_upsert runs once, however often its result is read. */
static const char upsert_sqlite_sql[] =
    "WITH u(r) AS MATERIALIZED (SELECT duet_upsert(?, ?, ?)) "
    "SELECT json_extract(r, '$.row') AS \"row\", "
    "CASE json_extract(r, '$.inserted') WHEN 1 THEN 't' ELSE 'f' END AS inserted FROM u";

static duet_status bind_upsert(duet_params *p, const options *o, bool pg) {
    duet_status st = duet_bind_text(p, NULL, o->sql);
    if (st == DUET_OK) st = duet_bind_text(p, NULL, o->row);
    if (st || !o->conflict) return st ? st : duet_bind_null(p, NULL);
    if (pg) return duet_bind_text(p, NULL, o->conflict);
    char *cols = json_columns(o->conflict);
    st = cols ? duet_bind_text(p, NULL, cols) : DUET_ERR_NO_MEMORY;
    free(cols);
    return st;
}

static int no_extension(bool pg) {
    if (pg)
        fputs("duet: upsert needs the duet extension in this database: "
              "run CREATE EXTENSION duet\n", stderr);
    else
        fputs("duet: upsert needs the duet SQLite extension: "
              "add extension=PATH (sqlite_ext/duet.so) to the URL\n", stderr);
    return 1;
}

static int cmd_upsert(duet_db *db, const options *o) {
    bool pg = duet_db_backend(db) == DUET_POSTGRESQL, ext = false;
    duet_status st = has_extension(db, &ext);
    if (st) return fail_db(st);
    if (!ext) return no_extension(pg);
    duet_params *p = duet_params_new();
    duet_result *r = NULL;
    st = p ? bind_upsert(p, o, pg) : DUET_ERR_NO_MEMORY;
    if (st == DUET_OK) st = duet_fetch_all(db, pg ? upsert_pg_sql : upsert_sqlite_sql, p, &r);
    if (st == DUET_OK) print_view(all_columns(r), o->fmt);
    if (st == DUET_OK && o->fmt == FMT_JSON) putchar('\n');
    duet_result_free(r);
    duet_params_free(p);
    return st ? fail_db(st) : 0;
}

/* The SQL (or upsert's row) from standard input when not given. */
static int read_input(options *o, char **input) {
    bool upsert = !strcmp(o->command, "upsert");
    *input = NULL;
    if (!strcmp(o->command, "ping") || (upsert ? o->row != NULL : o->sql != NULL)) return 0;
    *input = read_stdin();
    if (!*input || !**input) {
        free(*input);
        *input = NULL;
        return fail_usage("%s", upsert ? "no JSON row given" : "no SQL given");
    }
    if (upsert) o->row = *input;
    else o->sql = *input;
    return 0;
}

static int dispatch(duet_db *db, const options *o, const char *url) {
    duet_status st;
    if (!strcmp(o->command, "plan")) return cmd_plan(db, o);
    if (!strcmp(o->command, "upsert")) return cmd_upsert(db, o);
    if (!strcmp(o->command, "ping")) st = cmd_ping(db, url);
    else if (!strcmp(o->command, "query")) st = cmd_query(db, o);
    else st = cmd_exec(db, o);
    return st ? fail_db(st) : 0;
}

static int run(options *o) {
    char *url, *input;
    int rc = resolve_url(o, &url);
    if (rc) return rc;
    rc = read_input(o, &input);
    if (rc) {
        free(url);
        return rc;
    }
    duet_db *db;
    duet_status st = open_db(url, o->name, &db);
    if (st == DUET_OK) {
        rc = dispatch(db, o, url);
        duet_close(db);
    } else {
        rc = fail_db(st);
    }
    free(url);
    free(input);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
        fputs(usage, stdout);
        return 0;
    }
    options o = {.fmt = FMT_TEXT, .params = duet_params_new()};
    if (!o.params) return fail_usage("%s", "out of memory");
    int rc = parse_args(argc, argv, &o);
    if (rc == 0) rc = run(&o);
    duet_params_free(o.params);
    return rc;
}
