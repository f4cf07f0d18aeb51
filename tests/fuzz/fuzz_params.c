/*
 * fuzz_params.c — libFuzzer target for the :name / ? / $n translator.
 *
 * The first byte picks the engine, the rest is SQL (up to a NUL).  Beyond
 * "no crash, no leak": binding a value to every slot the translation found
 * must succeed, and on PostgreSQL translating the output again must change
 * nothing (its placeholders are already native) when the SQL has no '?'.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void bind_every_slot(const duet_sql *t) {
    duet_params *p = duet_params_new();
    const duet_value **vals = calloc(t->nslots + 1, sizeof *vals);
    if (!p || !vals) goto out;
    for (size_t k = 0; k < t->nslots; k++) {
        if (t->style == DUET_STYLE_NAMED)
            duet_bind_int64(p, t->slots[k].name, (int64_t)k);
        else
            duet_bind_text(p, NULL, "v");
    }
    if (duet__sql_bind(t, p, vals) != DUET_OK) abort();
    for (size_t k = 0; k < t->nslots; k++)
        if (!vals[k]) abort();
out:
    free(vals);
    duet_params_free(p);
}

static void check_idempotent(const duet_sql *t) {
    duet_sql again;
    if (duet__sql_translate(t->text, DUET_POSTGRESQL, &again) != DUET_OK) abort();
    if (strcmp(again.text, t->text) != 0 || again.nslots != t->nslots) abort();
    duet__sql_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    duet_backend backend = data[0] & 1 ? DUET_SQLITE : DUET_POSTGRESQL;
    char *sql = malloc(size);
    if (!sql) return 0;
    memcpy(sql, data + 1, size - 1);
    sql[size - 1] = '\0';
    duet_sql t;
    if (duet__sql_translate(sql, backend, &t) == DUET_OK) {
        bind_every_slot(&t);
        if (backend == DUET_POSTGRESQL && !strchr(sql, '?')) check_idempotent(&t);
        duet__sql_free(&t);
    }
    free(sql);
    return 0;
}
