/*
 * registry.c — named connections: Oxyde's db.init(default=..., analytics=...),
 * get_connection(name), register_connection and close-all.
 *
 * A registry is a small list guarded by a mutex; lookups are linear because
 * an application has a handful of names (a few hundred tenants at most).
 * Opening a database can take a while (min_connections connects), so it
 * happens outside the lock, and the name is checked again before insertion.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "internal.h"

typedef struct reg_entry {
    char *name;
    duet_db *db;
} reg_entry;

struct duet_registry {
    pthread_mutex_t mu;
    reg_entry *entries;
    size_t n, cap;
};

duet_registry *duet_registry_new(void) {
    duet_registry *reg = calloc(1, sizeof *reg);
    if (reg && pthread_mutex_init(&reg->mu, NULL) != 0) {
        free(reg);
        return NULL;
    }
    return reg;
}

static ssize_t find(const duet_registry *reg, const char *name) { /* (mu) */
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->entries[i].name, name) == 0) return (ssize_t)i;
    return -1;
}

/* "no connection named "x" (known: default, analytics)" */
static duet_status unknown_name(duet_registry *reg, const char *name) { /* (mu) */
    duet_buf b = {0};
    for (size_t i = 0; i < reg->n; i++) {
        if (i) duet__buf_puts(&b, ", ");
        duet__buf_puts(&b, reg->entries[i].name);
    }
    duet_status st = duet__err(DUET_ERR_NOT_FOUND, "no connection named \"%s\" (%s%s)", name,
                               reg->n ? "known: " : "none registered", b.p && !b.oom ? b.p : "");
    free(b.p);
    return st;
}

static duet_status check_name(const char *name) {
    if (!name || !*name) return duet__err(DUET_ERR_MISUSE, "a connection name must not be empty");
    return DUET_OK;
}

static duet_status already(const char *name) {
    return duet__err(DUET_ERR_MISUSE, "connection \"%s\" is already registered", name);
}

/* Adds an open database; on failure (duplicate, OOM) the database is closed. */
static duet_status insert(duet_registry *reg, const char *name, duet_db *db) {
    duet_status st = DUET_OK;
    char *copy = strdup(name);
    pthread_mutex_lock(&reg->mu);
    if (!copy) {
        st = duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    } else if (find(reg, name) >= 0) {
        st = already(name);
    } else if (reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 8;
        reg_entry *e = realloc(reg->entries, cap * sizeof *e);
        if (e) reg->entries = e, reg->cap = cap;
        else st = duet__err(DUET_ERR_NO_MEMORY, "out of memory");
    }
    if (st == DUET_OK) reg->entries[reg->n++] = (reg_entry){copy, db};
    pthread_mutex_unlock(&reg->mu);
    if (st) {
        free(copy);
        duet_close(db);
    }
    return st;
}

/* Prefixes the thread's error with the connection name, keeping the other fields. */
static duet_status name_error(const char *name, duet_status st) {
    char msg[1100];
    snprintf(msg, sizeof msg, "connection \"%s\": %s", name, duet_errmsg());
    return duet__err_full(st, duet_errsqlstate(), msg, duet_errdetail(), duet_errhint());
}

duet_status duet_register_config(duet_registry *reg, const char *name, const duet_config *cfg) {
    if (!reg || !cfg) return duet__err(DUET_ERR_MISUSE, "duet_register: NULL argument");
    duet_status st = check_name(name);
    if (st) return st;
    pthread_mutex_lock(&reg->mu);
    bool dup = find(reg, name) >= 0;
    pthread_mutex_unlock(&reg->mu);
    if (dup) return already(name);
    duet_db *db;
    st = duet_open_config(name, cfg, &db);
    if (st) return name_error(name, st);
    return insert(reg, name, db);
}

duet_status duet_register(duet_registry *reg, const char *name, const char *url) {
    duet_config *cfg;
    duet_status st = check_name(name);
    if (st) return st;
    st = duet_config_parse(url, &cfg);
    if (st) return name_error(name, st);
    st = duet_register_config(reg, name, cfg);
    duet_config_free(cfg);
    return st;
}

static void close_entry(reg_entry *e) {
    duet_close(e->db);
    free(e->name);
}

duet_status duet_unregister(duet_registry *reg, const char *name) {
    if (!reg || !name) return duet__err(DUET_ERR_MISUSE, "duet_unregister: NULL argument");
    pthread_mutex_lock(&reg->mu);
    ssize_t i = find(reg, name);
    if (i < 0) {
        duet_status st = unknown_name(reg, name);
        pthread_mutex_unlock(&reg->mu);
        return st;
    }
    reg_entry e = reg->entries[i];
    memmove(&reg->entries[i], &reg->entries[i + 1], (reg->n - (size_t)i - 1) * sizeof e);
    reg->n--;
    pthread_mutex_unlock(&reg->mu);
    close_entry(&e);
    return DUET_OK;
}

duet_status duet_registry_init(duet_registry *reg, const char *const names[],
                               const char *const urls[], size_t n) {
    if (!reg || (n && (!names || !urls)))
        return duet__err(DUET_ERR_MISUSE, "duet_registry_init: NULL argument");
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++)
            if (names[i] && names[j] && strcmp(names[i], names[j]) == 0)
                return duet__err(DUET_ERR_MISUSE, "connection \"%s\" is given twice", names[i]);
    }
    for (size_t i = 0; i < n; i++) {
        duet_status st = duet_register(reg, names[i], urls[i]);
        if (st == DUET_OK) continue;
        /* All or nothing: close the ones this call opened, keeping the error. */
        char msg[1100];
        snprintf(msg, sizeof msg, "%s", duet_errmsg());
        duet_status code = duet_errcode();
        for (size_t j = i; j-- > 0;) duet_unregister(reg, names[j]);
        return duet__err(code, "%s", msg);
    }
    duet__err_clear();
    return DUET_OK;
}

duet_status duet_get(duet_registry *reg, const char *name, duet_db **out) {
    if (!reg || !name || !out) return duet__err(DUET_ERR_MISUSE, "duet_get: NULL argument");
    *out = NULL;
    pthread_mutex_lock(&reg->mu);
    ssize_t i = find(reg, name);
    duet_status st = i < 0 ? unknown_name(reg, name) : DUET_OK;
    if (i >= 0) *out = reg->entries[i].db;
    pthread_mutex_unlock(&reg->mu);
    return st;
}

size_t duet_registry_count(duet_registry *reg) {
    if (!reg) return 0;
    pthread_mutex_lock(&reg->mu);
    size_t n = reg->n;
    pthread_mutex_unlock(&reg->mu);
    return n;
}

const char *duet_registry_name(duet_registry *reg, size_t i) {
    if (!reg) return NULL;
    pthread_mutex_lock(&reg->mu);
    const char *name = i < reg->n ? reg->entries[i].name : NULL;
    pthread_mutex_unlock(&reg->mu);
    return name;
}

void duet_registry_close(duet_registry *reg) {
    if (!reg) return;
    for (size_t i = 0; i < reg->n; i++) close_entry(&reg->entries[i]);
    free(reg->entries);
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}
