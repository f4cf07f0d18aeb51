/*
 * config.c — duet_config: defaults, the key/value form, validation, describe.
 *
 * Every way of configuring a database ends here: url.c splits a URL into
 * keys and values and calls duet_config_set, and applications using the
 * key/value form (databasez's dict) call it directly.  So validation and
 * error wording live in one place.
 *
 * Option names follow Oxyde's PoolSettings; the aliases users bring from
 * encode/databases and databasez (min_size, max_size, pool_size,
 * pool_recycle, ssl) map onto them.  Any libpq connection keyword passes
 * through to PQconnectdbParams; the list comes from PQconndefaults() so it
 * is always the installed libpq's.
 *
 * Passwords are never copied into a message: errors name the option and,
 * for anything but a password, the offending value.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "internal.h"

/* Oxyde's defaults. */
#define DEF_MAX_CONNECTIONS 20
#define DEF_MIN_CONNECTIONS 5

static void set_defaults(duet_config *cfg) {
    cfg->cache_size = 10000;
    cfg->busy_timeout = 5000;
    cfg->pool = (duet_pool_settings){
        .max_connections = DEF_MAX_CONNECTIONS,
        .min_connections = DEF_MIN_CONNECTIONS,
        .acquire_timeout_ms = 30e3,
        .idle_timeout_ms = 600e3,
        .max_lifetime_ms = 1800e3,
        .test_before_acquire = true,
        .transaction_timeout_ms = 300e3,
        .transaction_cleanup_interval_ms = 60e3,
    };
}

duet_config *duet_config_new(void) {
    duet_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return NULL;
    set_defaults(cfg);
    cfg->journal_mode = strdup("WAL");
    cfg->synchronous = strdup("NORMAL");
    if (!cfg->journal_mode || !cfg->synchronous) {
        duet_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void duet_config_free(duet_config *cfg) {
    if (!cfg) return;
    for (size_t i = 0; i < cfg->pg_nparams; i++) {
        free(cfg->pg_params[i].key);
        free(cfg->pg_params[i].value);
    }
    free(cfg->pg_params);
    free(cfg->scheme);
    free(cfg->sqlite_path);
    free(cfg->sqlite_shared_name);
    free(cfg->journal_mode);
    free(cfg->synchronous);
    free(cfg->sqlite_extension);
    free(cfg);
}

static char *dup_or_null(const char *s, bool *oom) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = true;
    return d;
}

duet_config *duet__config_copy(const duet_config *cfg) {
    if (!cfg) return NULL;
    duet_config *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    bool oom = false;
    *c = *cfg;
    c->scheme = dup_or_null(cfg->scheme, &oom);
    c->sqlite_path = dup_or_null(cfg->sqlite_path, &oom);
    c->sqlite_shared_name = dup_or_null(cfg->sqlite_shared_name, &oom);
    c->journal_mode = dup_or_null(cfg->journal_mode, &oom);
    c->synchronous = dup_or_null(cfg->synchronous, &oom);
    c->sqlite_extension = dup_or_null(cfg->sqlite_extension, &oom);
    c->pg_params = NULL;
    c->pg_nparams = 0;
    if (cfg->pg_nparams) {
        c->pg_params = calloc(cfg->pg_nparams, sizeof *c->pg_params);
        if (!c->pg_params) oom = true;
        for (size_t i = 0; c->pg_params && i < cfg->pg_nparams; i++) {
            c->pg_params[i].key = dup_or_null(cfg->pg_params[i].key, &oom);
            c->pg_params[i].value = dup_or_null(cfg->pg_params[i].value, &oom);
            c->pg_nparams++;
        }
    }
    if (oom) {
        duet_config_free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------ */
/* libpq keywords                                                     */
/* ------------------------------------------------------------------ */

static PQconninfoOption *libpq_options;
static pthread_once_t libpq_once = PTHREAD_ONCE_INIT;

static void load_libpq_options(void) { libpq_options = PQconndefaults(); }

static bool is_libpq_keyword(const char *key) {
    pthread_once(&libpq_once, load_libpq_options);
    if (!libpq_options) return false;
    for (PQconninfoOption *o = libpq_options; o->keyword; o++)
        if (strcmp(o->keyword, key) == 0) return true;
    return false;
}

const char *duet__config_pg_get(const duet_config *cfg, const char *key) {
    for (size_t i = 0; cfg && i < cfg->pg_nparams; i++)
        if (strcmp(cfg->pg_params[i].key, key) == 0) return cfg->pg_params[i].value;
    return NULL;
}

/* Sets or replaces one libpq keyword (the last value given wins, as in libpq). */
static duet_status pg_put(duet_config *cfg, const char *key, const char *value) {
    char *v = strdup(value);
    if (!v) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < cfg->pg_nparams; i++) {
        if (strcmp(cfg->pg_params[i].key, key) == 0) {
            free(cfg->pg_params[i].value);
            cfg->pg_params[i].value = v;
            return DUET_OK;
        }
    }
    duet_kv *grown = realloc(cfg->pg_params, (cfg->pg_nparams + 1) * sizeof *grown);
    char *k = strdup(key);
    if (grown) cfg->pg_params = grown;
    if (!grown || !k) {
        free(v);
        free(k);
        return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    }
    cfg->pg_params[cfg->pg_nparams++] = (duet_kv){k, v};
    return DUET_OK;
}

/* ------------------------------------------------------------------ */
/* Value parsers                                                      */
/* ------------------------------------------------------------------ */

static duet_status bad_value(const char *key, const char *value, const char *expected) {
    return duet__err(DUET_ERR_CONFIG, "invalid value for %s: \"%s\" (expected %s)", key, value,
                     expected);
}

static bool parse_long(const char *s, long *out) {
    char *end;
    if (!*s || isspace((unsigned char)*s)) return false;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static duet_status parse_int_min(const char *key, const char *value, long min, int *out) {
    long v;
    if (!parse_long(value, &v) || v < min || v > 1000000000L) {
        char expected[64];
        snprintf(expected, sizeof expected, "an integer >= %ld", min);
        return bad_value(key, value, expected);
    }
    *out = (int)v;
    return DUET_OK;
}

/*
 * Durations are seconds as Oxyde takes them ("30", "0.5"), or carry a unit
 * ("500ms", "30s", "5min", "1h").  The result is in milliseconds.
 */
static duet_status parse_duration(const char *key, const char *value, double *out_ms) {
    static const struct {
        const char *unit;
        double ms;
    } units[] = {{"", 1e3}, {"ms", 1}, {"s", 1e3}, {"m", 60e3}, {"min", 60e3}, {"h", 3600e3}};
    char *end;
    if (!*value || isspace((unsigned char)*value) || *value == '+')
        return bad_value(key, value, "seconds, e.g. 30, 0.5 or 500ms");
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || !isfinite(v) || v < 0 || isalpha((unsigned char)*value))
        return bad_value(key, value, "seconds, e.g. 30, 0.5 or 500ms");
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].unit) == 0) {
            *out_ms = v * units[i].ms;
            return DUET_OK;
        }
    }
    return bad_value(key, value, "seconds, e.g. 30, 0.5 or 500ms");
}

static bool parse_bool_text(const char *s, bool *out) {
    static const char *const yes[] = {"true", "1", "yes", "on", "t"};
    static const char *const no[] = {"false", "0", "no", "off", "f"};
    for (size_t i = 0; i < 5; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = true, true;
        if (strcasecmp(s, no[i]) == 0) return *out = false, true;
    }
    return false;
}

static duet_status parse_bool(const char *key, const char *value, bool *out) {
    if (!parse_bool_text(value, out)) return bad_value(key, value, "true or false");
    return DUET_OK;
}

/* Matches value case-insensitively against a NULL-terminated list; returns its index or -1. */
static int one_of(const char *value, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (strcasecmp(value, list[i]) == 0) return i;
    return -1;
}

static duet_status replace_str(char **slot, const char *value) {
    char *v = strdup(value);
    if (!v) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    free(*slot);
    *slot = v;
    return DUET_OK;
}

/* ------------------------------------------------------------------ */
/* Pool settings                                                      */
/* ------------------------------------------------------------------ */

static duet_status set_max_connections(duet_config *cfg, const char *key, const char *value) {
    int v;
    duet_status st = parse_int_min(key, value, 1, &v);
    if (st) return st;
    if (cfg->min_set && cfg->pool.min_connections > v)
        return duet__err(DUET_ERR_CONFIG, "%s (%d) is less than min_connections (%d)", key, v,
                         cfg->pool.min_connections);
    cfg->pool.max_connections = v;
    cfg->max_set = true;
    /* Oxyde's default minimum of 5 must not make max_connections=1 an error. */
    if (!cfg->min_set && cfg->pool.min_connections > v) cfg->pool.min_connections = v;
    return DUET_OK;
}

static duet_status set_min_connections(duet_config *cfg, const char *key, const char *value) {
    int v;
    duet_status st = parse_int_min(key, value, 0, &v);
    if (st) return st;
    if (v > cfg->pool.max_connections) {
        if (cfg->max_set)
            return duet__err(DUET_ERR_CONFIG, "%s (%d) is greater than max_connections (%d)", key,
                             v, cfg->pool.max_connections);
        cfg->pool.max_connections = v;
    }
    cfg->pool.min_connections = v;
    cfg->min_set = true;
    return DUET_OK;
}

static duet_status set_pool_option(duet_config *cfg, const char *key, const char *value,
                                   bool *handled) {
    duet_pool_settings *p = &cfg->pool;
    static const char *const poolers[] = {"session", "transaction", NULL};
    *handled = true;
    if (!strcmp(key, "max_connections") || !strcmp(key, "max_size") || !strcmp(key, "pool_size"))
        return set_max_connections(cfg, key, value);
    if (!strcmp(key, "min_connections") || !strcmp(key, "min_size"))
        return set_min_connections(cfg, key, value);
    if (!strcmp(key, "acquire_timeout")) return parse_duration(key, value, &p->acquire_timeout_ms);
    if (!strcmp(key, "idle_timeout")) return parse_duration(key, value, &p->idle_timeout_ms);
    if (!strcmp(key, "max_lifetime") || !strcmp(key, "pool_recycle"))
        return parse_duration(key, value, &p->max_lifetime_ms);
    if (!strcmp(key, "test_before_acquire"))
        return parse_bool(key, value, &p->test_before_acquire);
    if (!strcmp(key, "transaction_timeout"))
        return parse_duration(key, value, &p->transaction_timeout_ms);
    if (!strcmp(key, "transaction_cleanup_interval")) {
        double ms;
        duet_status st = parse_duration(key, value, &ms);
        if (st == DUET_OK && ms <= 0) return bad_value(key, value, "a duration above 0");
        if (st == DUET_OK) p->transaction_cleanup_interval_ms = ms;
        return st;
    }
    if (!strcmp(key, "leak_threshold")) return parse_duration(key, value, &p->leak_threshold_ms);
    if (!strcmp(key, "force_rollback")) return parse_bool(key, value, &p->force_rollback);
    if (!strcmp(key, "pooler")) {
        int i = one_of(value, poolers);
        if (i < 0) return bad_value(key, value, "session or transaction");
        p->pooler_transaction = i == 1;
        return DUET_OK;
    }
    *handled = false;
    return DUET_OK;
}

/* ------------------------------------------------------------------ */
/* SQLite pragmas                                                     */
/* ------------------------------------------------------------------ */

/* Oxyde spells them sqlite_journal_mode...; both spellings are accepted. */
static const char *pragma_name(const char *key) {
    return strncmp(key, "sqlite_", 7) == 0 ? key + 7 : key;
}

static bool is_pragma(const char *key) {
    static const char *const names[] = {"journal_mode", "synchronous", "cache_size",
                                        "busy_timeout", NULL};
    for (int i = 0; names[i]; i++)
        if (strcmp(pragma_name(key), names[i]) == 0) return true;
    return false;
}

static duet_status set_pragma(duet_config *cfg, const char *key, const char *value) {
    static const char *const journal[] = {"DELETE", "TRUNCATE", "PERSIST", "MEMORY",
                                          "WAL",    "OFF",      NULL};
    static const char *const sync[] = {"OFF", "NORMAL", "FULL", "EXTRA", NULL};
    static const char *const sync_num[] = {"0", "1", "2", "3", NULL};
    const char *name = pragma_name(key);
    if (!strcmp(name, "journal_mode")) {
        int i = one_of(value, journal);
        if (i < 0) return bad_value(key, value, "DELETE, TRUNCATE, PERSIST, MEMORY, WAL or OFF");
        return replace_str(&cfg->journal_mode, journal[i]);
    }
    if (!strcmp(name, "synchronous")) {
        int i = one_of(value, sync);
        if (i < 0) i = one_of(value, sync_num);
        if (i < 0) return bad_value(key, value, "OFF, NORMAL, FULL or EXTRA");
        return replace_str(&cfg->synchronous, sync[i]);
    }
    if (!strcmp(name, "cache_size")) {
        long v;
        if (!parse_long(value, &v) || v < -1000000000L || v > 1000000000L)
            return bad_value(key, value, "an integer: pages, or -KiB");
        cfg->cache_size = (int)v;
        return DUET_OK;
    }
    return parse_int_min(key, value, 0, &cfg->busy_timeout); /* busy_timeout, in ms */
}

/* ------------------------------------------------------------------ */
/* PostgreSQL options                                                 */
/* ------------------------------------------------------------------ */

/* Every entry of a comma-separated port list is empty or 1..65535. */
static bool valid_ports(const char *value) {
    const char *p = value;
    if (!*value) return false;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (n > 0) {
            long v = 0;
            for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)p[i]) || n > 5) return false;
                v = v * 10 + (p[i] - '0');
            }
            if (v < 1 || v > 65535) return false;
        }
        if (!p[n]) return true;
        p += n + 1;
    }
}

/* Checks the values libpq would only reject at connect time, to fail at parse time. */
static duet_status check_pg_value(const char *key, const char *value) {
    static const char *const sslmodes[] = {"disable", "allow",     "prefer",
                                           "require", "verify-ca", "verify-full", NULL};
    static const char *const attrs[] = {"any",     "read-write", "read-only", "primary",
                                        "standby", "prefer-standby", NULL};
    if (!strcmp(key, "sslmode") && one_of(value, sslmodes) < 0)
        return bad_value(key, value,
                         "disable, allow, prefer, require, verify-ca or verify-full");
    if (!strcmp(key, "target_session_attrs") && one_of(value, attrs) < 0)
        return bad_value(key, value,
                         "any, read-write, read-only, primary, standby or prefer-standby");
    if (!strcmp(key, "port") && !valid_ports(value))
        return bad_value(key, value, "a port number 1-65535, or a comma-separated list");
    if (!strcmp(key, "connect_timeout")) {
        long v;
        if (!parse_long(value, &v) || v < 0) return bad_value(key, value, "whole seconds >= 0");
    }
    return DUET_OK;
}

static duet_status set_pg_option(duet_config *cfg, const char *key, const char *value) {
    if (!strcmp(key, "ssl")) {
        bool on;
        if (!parse_bool_text(value, &on)) return bad_value(key, value, "true or false");
        return pg_put(cfg, "sslmode", on ? "require" : "disable");
    }
    if (!strcmp(key, "database")) key = "dbname";
    duet_status st = check_pg_value(key, value);
    return st ? st : pg_put(cfg, key, value);
}

/* ------------------------------------------------------------------ */
/* duet_config_set                                                    */
/* ------------------------------------------------------------------ */

static duet_status set_scheme(duet_config *cfg, const char *value) {
    char base[32];
    size_t n = strcspn(value, "+"); /* "postgresql+asyncpg": the driver part is Python's */
    if (n == 0 || n >= sizeof base) return duet__err(DUET_ERR_CONFIG, "missing URL scheme");
    memcpy(base, value, n);
    base[n] = '\0';
    for (char *c = base; *c; c++) *c = (char)tolower((unsigned char)*c);
    duet_backend backend;
    if (!strcmp(base, "postgresql") || !strcmp(base, "postgres"))
        backend = DUET_POSTGRESQL;
    else if (!strcmp(base, "sqlite") || !strcmp(base, "sqlite3"))
        backend = DUET_SQLITE;
    else
        return duet__err(DUET_ERR_UNSUPPORTED, "backend not supported: %s", base);
    if (cfg->backend && cfg->backend != backend)
        return duet__err(DUET_ERR_CONFIG, "scheme already set to %s", cfg->scheme);
    duet_status st = replace_str(&cfg->scheme, base);
    if (st == DUET_OK) cfg->backend = backend;
    return st;
}

static bool is_pg_core_key(const char *key) {
    static const char *const keys[] = {"host", "port", "user", "password", "dbname", "ssl", NULL};
    for (int i = 0; keys[i]; i++)
        if (!strcmp(key, keys[i])) return true;
    return is_libpq_keyword(key);
}

/* extension=PATH (also sqlite_extension): loaded on every new SQLite connection. */
static bool is_extension_key(const char *key) {
    return !strcmp(key, "extension") || !strcmp(key, "sqlite_extension");
}

static duet_status wrong_backend(const char *key, const char *backend) {
    return duet__err(DUET_ERR_CONFIG, "option \"%s\" applies to %s URLs only", key, backend);
}

duet_status duet_config_set(duet_config *cfg, const char *key, const char *value) {
    if (!cfg || !key || !value)
        return duet__err(DUET_ERR_MISUSE, "duet_config_set: NULL %s",
                         !cfg ? "config" : !key ? "key" : "value");
    if (!strcmp(key, "scheme")) return set_scheme(cfg, value);
    bool handled;
    duet_status st = set_pool_option(cfg, key, value, &handled);
    if (handled) return st;
    bool pg_key = is_pg_core_key(key) || !strcmp(key, "database");
    bool sqlite_key = is_pragma(key) || is_extension_key(key);
    if (!pg_key && !sqlite_key)
        return duet__err(DUET_ERR_CONFIG, "unknown option \"%s\"", key);
    if (!cfg->backend)
        return duet__err(DUET_ERR_CONFIG, "set \"scheme\" before \"%s\"", key);
    if (cfg->backend == DUET_SQLITE) {
        if (!strcmp(key, "database")) return replace_str(&cfg->sqlite_path, value);
        if (is_extension_key(key)) {
            if (!*value) return bad_value(key, value, "the path of a loadable extension");
            return replace_str(&cfg->sqlite_extension, value);
        }
        if (is_pragma(key)) return set_pragma(cfg, key, value);
        return wrong_backend(key, "postgresql");
    }
    if (sqlite_key) return wrong_backend(key, "sqlite");
    return set_pg_option(cfg, key, value);
}

/* ------------------------------------------------------------------ */
/* duet_config_describe                                               */
/* ------------------------------------------------------------------ */

/* Percent-encodes what would otherwise end a URL component. */
static void add_encoded(duet_buf *b, const char *s, const char *keep) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || strchr("-._~", c) || (c && strchr(keep, c)))
            duet__buf_add(b, (const char *)&c, 1);
        else
            duet__buf_printf(b, "%%%02X", c);
    }
}

static bool has_query(const duet_buf *b) { return b->p && strchr(b->p, '?'); }

static void add_option(duet_buf *b, const char *key, const char *value) {
    duet__buf_puts(b, has_query(b) ? "&" : "?");
    duet__buf_puts(b, key);
    duet__buf_puts(b, "=");
    add_encoded(b, value, "/:,");
}

/* A host list, with IPv6 literals bracketed again. */
static void add_hosts(duet_buf *b, const char *hosts) {
    for (const char *h = hosts;;) {
        size_t n = strcspn(h, ",");
        char one[256];
        snprintf(one, sizeof one, "%.*s", (int)n, h);
        bool v6 = strchr(one, ':') != NULL;
        if (v6) duet__buf_puts(b, "[");
        add_encoded(b, one, v6 ? ":" : "");
        if (v6) duet__buf_puts(b, "]");
        if (!h[n]) return;
        duet__buf_puts(b, ",");
        h += n + 1;
    }
}

static void describe_pg(const duet_config *cfg, duet_buf *b) {
    const char *user = duet__config_pg_get(cfg, "user");
    const char *host = duet__config_pg_get(cfg, "host");
    const char *port = duet__config_pg_get(cfg, "port");
    const char *db = duet__config_pg_get(cfg, "dbname");
    /* An empty entry in a host list is valid for libpq but not in a URL authority. */
    bool host_option = host && (!*host || host[0] == '/' || host[0] == ',' ||
                                strstr(host, ",,") || host[strlen(host) - 1] == ',');
    /* host:port in the authority only when it reads back the same: one host, one port. */
    bool port_inline = port && !host_option && host && !strchr(host, ',') && !strchr(port, ',');
    bool user_inline = user && *user; /* "postgresql://@h" would not read back as user="" */
    if (user_inline) add_encoded(b, user, "");
    if (duet__config_pg_get(cfg, "password")) duet__buf_puts(b, ":***");
    if (user_inline || duet__config_pg_get(cfg, "password")) duet__buf_puts(b, "@");
    if (host && !host_option) add_hosts(b, host);
    if (port_inline) duet__buf_printf(b, ":%s", port);
    duet__buf_puts(b, "/");
    if (db) add_encoded(b, db, "");
    if (user && !user_inline) add_option(b, "user", user);
    if (host_option) add_option(b, "host", host);
    if (port && !port_inline) add_option(b, "port", port);
    for (size_t i = 0; i < cfg->pg_nparams; i++) {
        const char *k = cfg->pg_params[i].key;
        if (!strcmp(k, "user") || !strcmp(k, "password") || !strcmp(k, "host") ||
            !strcmp(k, "port") || !strcmp(k, "dbname"))
            continue;
        add_option(b, k, cfg->pg_params[i].value);
    }
}

static void describe_sqlite(const duet_config *cfg, duet_buf *b) {
    duet__buf_puts(b, "/");
    if (cfg->sqlite_path) add_encoded(b, cfg->sqlite_path, "/:");
    if (cfg->journal_mode && strcmp(cfg->journal_mode, "WAL"))
        add_option(b, "journal_mode", cfg->journal_mode);
    if (cfg->synchronous && strcmp(cfg->synchronous, "NORMAL"))
        add_option(b, "synchronous", cfg->synchronous);
    if (cfg->cache_size != 10000)
        duet__buf_printf(b, "%ccache_size=%d", has_query(b) ? '&' : '?', cfg->cache_size);
    if (cfg->busy_timeout != 5000)
        duet__buf_printf(b, "%cbusy_timeout=%d", has_query(b) ? '&' : '?', cfg->busy_timeout);
    if (cfg->sqlite_extension) add_option(b, "extension", cfg->sqlite_extension);
}

static void add_duration(duet_buf *b, const char *key, double ms, double def) {
    char v[40];
    if (ms == def) return;
    snprintf(v, sizeof v, "%gms", ms);
    add_option(b, key, v);
}

/* Pool settings that differ from the defaults. */
static void describe_pool(const duet_config *cfg, duet_buf *b) {
    const duet_pool_settings *p = &cfg->pool;
    char v[24];
    if (cfg->max_set || p->max_connections != DEF_MAX_CONNECTIONS) {
        snprintf(v, sizeof v, "%d", p->max_connections);
        add_option(b, "max_connections", v);
    }
    if (cfg->min_set) {
        snprintf(v, sizeof v, "%d", p->min_connections);
        add_option(b, "min_connections", v);
    }
    add_duration(b, "acquire_timeout", p->acquire_timeout_ms, 30e3);
    add_duration(b, "idle_timeout", p->idle_timeout_ms, 600e3);
    add_duration(b, "max_lifetime", p->max_lifetime_ms, 1800e3);
    if (!p->test_before_acquire) add_option(b, "test_before_acquire", "false");
    add_duration(b, "transaction_timeout", p->transaction_timeout_ms, 300e3);
    add_duration(b, "transaction_cleanup_interval", p->transaction_cleanup_interval_ms, 60e3);
    add_duration(b, "leak_threshold", p->leak_threshold_ms, 0);
    if (p->force_rollback) add_option(b, "force_rollback", "true");
    if (p->pooler_transaction) add_option(b, "pooler", "transaction");
}

char *duet_config_describe(const duet_config *cfg) {
    duet_buf b = {0};
    if (!cfg) return strdup("(null)");
    duet__buf_printf(&b, "%s://", cfg->scheme ? cfg->scheme : "");
    if (cfg->backend == DUET_SQLITE)
        describe_sqlite(cfg, &b);
    else
        describe_pg(cfg, &b);
    describe_pool(cfg, &b);
    return duet__buf_take(&b);
}

/* Strings libduet returns (duet_config_describe) come from malloc. */
void duet_free(void *ptr) { free(ptr); }
