/*
 * url.c — duet_config_parse: database URLs into a duet_config.
 *
 *   postgresql://user:pass@host:5432/db?sslmode=require&max_connections=10
 *   postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write
 *   postgresql://postgres@/postgres?host=/tmp/sock&port=5432
 *   sqlite:///relative.db   sqlite:////absolute.db   sqlite:///:memory:
 *
 * The URL is only split and percent-decoded here; every part goes through
 * duet_config_set, so the URL form and the key/value form accept the same
 * options with the same errors.  Messages never quote the URL itself: it may
 * carry a password.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; what names the part in the error. */
static duet_status decode(const char *s, size_t n, const char *what, char **out) {
    char *d = malloc(n + 1), *o = d;
    if (!d) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 1 < n ? hex_digit(s[i + 1]) : -1;
        int lo = i + 2 < n ? hex_digit(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(d);
            return duet__err(DUET_ERR_CONFIG, "malformed percent-encoding in the %s of the URL",
                             what);
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    *out = d;
    return DUET_OK;
}

/* Decodes s[0..n) and sets it as key. */
static duet_status set_decoded(duet_config *cfg, const char *key, const char *s, size_t n,
                               const char *what) {
    char *v;
    duet_status st = decode(s, n, what, &v);
    if (st) return st;
    st = duet_config_set(cfg, key, v);
    free(v);
    return st;
}

/* user[:password] */
static duet_status parse_userinfo(duet_config *cfg, const char *s, size_t n) {
    const char *colon = memchr(s, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    duet_status st = DUET_OK;
    if (ulen) st = set_decoded(cfg, "user", s, ulen, "user name");
    if (st == DUET_OK && colon) st = set_decoded(cfg, "password", colon + 1, n - ulen - 1, "password");
    return st;
}

/*
 * One entry of host[:port][,host[:port]...]; IPv6 literals are bracketed.
 * Appends to the comma-separated host and port lists libpq takes (an empty
 * entry means libpq's default), and tells whether it had a host or a port.
 */
static duet_status parse_host_entry(const char *s, size_t n, duet_buf *hosts, duet_buf *ports,
                                    bool *had_host, bool *had_port) {
    const char *end = s + n, *port = NULL, *h = s;
    size_t hlen = n;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return duet__err(DUET_ERR_CONFIG, "malformed URL: unclosed '[' in the host");
        if (close + 1 < end && close[1] != ':')
            return duet__err(DUET_ERR_CONFIG, "malformed URL: unexpected text after ']' in the host");
        if (close + 1 < end) port = close + 2;
        h = s + 1;
        hlen = (size_t)(close - h);
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon) port = colon + 1, hlen = (size_t)(colon - s);
    }
    char *host;
    duet_status st = decode(h, hlen, "host", &host);
    if (st) return st;
    if (port && port == end) {
        free(host);
        return duet__err(DUET_ERR_CONFIG, "malformed URL: empty port after ':'");
    }
    duet__buf_puts(hosts, host);
    if (port) duet__buf_add(ports, port, (size_t)(end - port));
    *had_host |= *host != '\0';
    *had_port |= port != NULL;
    free(host);
    return DUET_OK;
}

static duet_status parse_hosts(duet_config *cfg, const char *s, size_t n) {
    duet_buf hosts = {0}, ports = {0};
    duet_status st = DUET_OK;
    bool any_host = false, any_port = false;
    const char *end = s + n;
    for (const char *p = s; st == DUET_OK && p <= end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t len = comma ? (size_t)(comma - p) : (size_t)(end - p);
        if (p != s) duet__buf_puts(&hosts, ","), duet__buf_puts(&ports, ",");
        bool had_host = false;
        st = parse_host_entry(p, len, &hosts, &ports, &had_host, &any_port);
        if (st == DUET_OK && !had_host && (comma || p != s))
            st = duet__err(DUET_ERR_CONFIG, "malformed URL: empty host in a host list");
        any_host |= had_host;
        p += len + 1;
    }
    if (st == DUET_OK && (hosts.oom || ports.oom)) st = duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    if (st == DUET_OK && any_host) st = duet_config_set(cfg, "host", hosts.p);
    if (st == DUET_OK && any_port) st = duet_config_set(cfg, "port", ports.p);
    free(hosts.p);
    free(ports.p);
    return st;
}

/* [user[:password]@]hosts[/dbname] — the userinfo ends at the last '@'. */
static duet_status parse_pg_body(duet_config *cfg, const char *s, size_t n) {
    const char *at = NULL;
    for (const char *p = s; p < s + n; p++)
        if (*p == '@') at = p;
    duet_status st = DUET_OK;
    if (at) {
        st = parse_userinfo(cfg, s, (size_t)(at - s));
        n -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t)(slash - s) : n;
    if (st == DUET_OK && alen) st = parse_hosts(cfg, s, alen);
    if (st == DUET_OK && slash && slash + 1 < s + n)
        st = set_decoded(cfg, "dbname", slash + 1, (size_t)(s + n - slash - 1), "database name");
    return st;
}

/* sqlite:///relative.db, sqlite:////abs.db, sqlite:///:memory:, sqlite:// (memory). */
static duet_status parse_sqlite_body(duet_config *cfg, const char *s, size_t n) {
    if (n == 0) return duet_config_set(cfg, "database", ":memory:");
    if (s[0] != '/')
        return duet__err(DUET_ERR_CONFIG,
                         "malformed sqlite URL: it has no host; write sqlite:///relative.db "
                         "or sqlite:////absolute/path.db");
    if (n == 1) return duet__err(DUET_ERR_CONFIG, "malformed sqlite URL: missing database path");
    return set_decoded(cfg, "database", s + 1, n - 1, "database path");
}

/* key=value&key=value */
static duet_status parse_query(duet_config *cfg, const char *q) {
    while (*q) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        if (n == 0) {
            q++;
            continue;
        }
        if (eq == q) return duet__err(DUET_ERR_CONFIG, "malformed URL: empty option name");
        char *key, *value;
        size_t klen = eq ? (size_t)(eq - q) : n;
        duet_status st = decode(q, klen, "option name", &key);
        if (st) return st;
        if (!eq) {
            st = duet__err(DUET_ERR_CONFIG, "option \"%s\" has no value", key);
            free(key);
            return st;
        }
        value = NULL;
        st = decode(eq + 1, n - klen - 1, "option value", &value);
        if (st == DUET_OK) st = duet_config_set(cfg, key, value);
        free(value);
        free(key);
        if (st) return st;
        q += n + (q[n] == '&');
    }
    return DUET_OK;
}

/* The scheme: a letter, then letters, digits, '+', '-', '.', up to "://". */
static duet_status split_scheme(const char *url, char *scheme, size_t size, const char **rest) {
    const char *sep = strstr(url, "://");
    size_t n = sep ? (size_t)(sep - url) : 0;
    bool ok = n > 0 && n < size && isalpha((unsigned char)url[0]);
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)url[i]) || strchr("+-.", url[i]);
    if (!ok)
        return duet__err(DUET_ERR_CONFIG,
                         "malformed URL: expected scheme://..., e.g. postgresql://host/db or "
                         "sqlite:///app.db");
    memcpy(scheme, url, n);
    scheme[n] = '\0';
    *rest = sep + 3;
    return DUET_OK;
}

/*
 * Where the query of a PostgreSQL URL starts.  A '?' before the userinfo's
 * '@' is part of the password, as libpq reads it (the userinfo runs to the
 * first '@' not preceded by a '/'): splitting there would make the tail of
 * the password a host, port or option, and echo it in the error.
 */
static const char *query_start(const char *rest, const char *q) {
    if (!q || memchr(rest, '@', (size_t)(q - rest))) return q;
    const char *p = rest + strcspn(rest, "@/");
    return *p == '@' ? strchr(p, '?') : q;
}

duet_status duet_config_parse(const char *url, duet_config **out) {
    if (!url || !out) return duet__err(DUET_ERR_MISUSE, "duet_config_parse: NULL argument");
    *out = NULL;
    if (!*url) return duet__err(DUET_ERR_CONFIG, "empty URL");
    char scheme[64];
    const char *rest = NULL;
    duet_status st = split_scheme(url, scheme, sizeof scheme, &rest);
    if (st) return st;
    duet_config *cfg = duet_config_new();
    if (!cfg) return duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    st = duet_config_set(cfg, "scheme", scheme);
    const char *q = strchr(rest, '?');
    if (cfg->backend == DUET_POSTGRESQL) q = query_start(rest, q);
    size_t body = q ? (size_t)(q - rest) : strlen(rest);
    if (st == DUET_OK)
        st = cfg->backend == DUET_SQLITE ? parse_sqlite_body(cfg, rest, body)
                                         : parse_pg_body(cfg, rest, body);
    if (st == DUET_OK && q) st = parse_query(cfg, q + 1);
    if (st) {
        duet_config_free(cfg);
        return st;
    }
    duet__err_clear();
    *out = cfg;
    return DUET_OK;
}
