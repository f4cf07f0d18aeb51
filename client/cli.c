/*
 * cli.c — the duet command: libduet for people who do not write C.
 *
 *   duet query [--url URL | --name NAME] [--format text|csv|json] [-p name=value]... SQL
 *   duet exec  [...] SQL
 *   duet ping  [--url URL | --name NAME]
 *
 * The database comes from --url, or --name looked up in DUET_DATABASES
 * ("default=sqlite:///a.db;analytics=postgresql://..."), or DATABASE_URL.
 * query prints an aligned table (text), CSV or a JSON array; csv and json
 * stream the rows (constant memory), text reads them all to align columns.
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
    duet_params *params;
} options;

static const char usage[] =
    "usage: duet query|exec|ping [--url URL | --name NAME] [--format text|csv|json]\n"
    "                            [-p NAME=VALUE]... [-a VALUE]... [SQL]\n"
    "\n"
    "  query   run SQL and print its rows (aligned text, CSV or JSON)\n"
    "  exec    run SQL and print the number of rows it changed\n"
    "  ping    check that the database answers\n"
    "\n"
    "  --url URL        postgresql://user:pass@host:5432/db?sslmode=require,\n"
    "                   sqlite:///relative.db, sqlite:////abs.db, sqlite:///:memory:\n"
    "  --name NAME      a connection listed in DUET_DATABASES (name=url;name=url)\n"
    "  --format F       text (default), csv or json (json values are strings or null)\n"
    "  -p NAME=VALUE    bind :NAME to the text VALUE\n"
    "  -a VALUE         bind the next positional parameter (? or $n) to VALUE\n"
    "  SQL              the statement; read from standard input when absent\n"
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
    return 0;
}

static int parse_args(int argc, char **argv, options *o) {
    if (argc < 2) return fail_usage("%s", "missing command");
    o->command = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool takes = !strcmp(a, "--url") || !strcmp(a, "--name") || !strcmp(a, "--format") ||
                     !strcmp(a, "-p") || !strcmp(a, "-a");
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
        } else if (a[0] == '-' && a[1] == '-') {
            return fail_usage("unknown option %s", a);
        } else if (o->sql) {
            return fail_usage("%s", "one SQL statement at a time (quote it)");
        } else {
            o->sql = a;
        }
    }
    if (o->url && o->name) return fail_usage("%s", "give --url or --name, not both");
    return 0;
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

static void print_text(const duet_result *r) {
    size_t nc = duet_result_ncols(r), nr = duet_result_nrows(r);
    size_t *w = calloc(nc ? nc : 1, sizeof *w);
    if (!w) return;
    for (size_t c = 0; c < nc; c++) {
        w[c] = width(duet_result_colname(r, c));
        for (size_t i = 0; i < nr; i++) {
            size_t cw = width(duet_result_text(r, i, c));
            if (cw > w[c]) w[c] = cw;
        }
    }
    for (size_t c = 0; c < nc; c++) {
        fputs(c ? " | " : " ", stdout);
        pad(duet_result_colname(r, c), w[c], c + 1 == nc);
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
            pad(duet_result_text(r, i, c), w[c], c + 1 == nc);
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

static void print_row(const duet_result *row, format fmt, bool first) {
    size_t nc = duet_result_ncols(row);
    if (fmt == FMT_JSON) fputs(first ? "  {" : ",\n  {", stdout);
    for (size_t c = 0; c < nc; c++) {
        if (fmt == FMT_CSV) {
            if (c) putchar(',');
            csv_field(duet_result_text(row, 0, c));
        } else {
            if (c) fputs(", ", stdout);
            json_string(duet_result_colname(row, c));
            fputs(": ", stdout);
            json_string(duet_result_text(row, 0, c));
        }
    }
    fputs(fmt == FMT_CSV ? "\n" : "}", stdout);
}

static void csv_header(const duet_result *row) {
    for (size_t c = 0; c < duet_result_ncols(row); c++) {
        if (c) putchar(',');
        csv_field(duet_result_colname(row, c));
    }
    putchar('\n');
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
        if (first && o->fmt == FMT_CSV) csv_header(row);
        print_row(row, o->fmt, first);
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
    if (st == DUET_OK) print_text(r);
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

static int run(options *o) {
    bool ping = !strcmp(o->command, "ping");
    if (!ping && strcmp(o->command, "query") && strcmp(o->command, "exec"))
        return fail_usage("unknown command \"%s\" (query, exec or ping)", o->command);
    char *url, *input = NULL;
    int rc = resolve_url(o, &url);
    if (rc) return rc;
    if (!ping && !o->sql) {
        o->sql = input = read_stdin();
        if (!input || !*input) {
            free(url), free(input);
            return fail_usage("%s", "no SQL given");
        }
    }
    duet_db *db;
    duet_status st = open_db(url, o->name, &db);
    if (st == DUET_OK) {
        st = ping ? cmd_ping(db, url) : !strcmp(o->command, "query") ? cmd_query(db, o)
                                                                      : cmd_exec(db, o);
        duet_close(db);
    }
    free(url);
    free(input);
    return st ? fail_db(st) : 0;
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
