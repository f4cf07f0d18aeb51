/*
 * fuzz_url.c — libFuzzer target for duet_config_parse and duet_config_set.
 *
 * The input is split at NUL bytes: the first piece is a URL, the others are
 * key=value pairs fed to the key/value form.  Beyond "no crash, no leak",
 * it checks that describe's output parses again and describes the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "duet.h"

static void check_round_trip(const duet_config *cfg) {
    char *d1 = duet_config_describe(cfg);
    if (!d1) return;
    duet_config *again;
    if (duet_config_parse(d1, &again) != DUET_OK) abort(); /* describe wrote a URL we reject */
    char *d2 = duet_config_describe(again);
    if (!d2 || strcmp(d1, d2) != 0) abort();
    duet_free(d1);
    duet_free(d2);
    duet_config_free(again);
}

static void key_values(const char *p, const char *end) {
    duet_config *cfg = duet_config_new();
    if (!cfg) return;
    for (; p < end; p += strlen(p) + 1) {
        const char *eq = strchr(p, '=');
        if (!eq) continue;
        char *key = strndup(p, (size_t)(eq - p));
        if (key) duet_config_set(cfg, key, eq + 1);
        free(key);
    }
    char *d = duet_config_describe(cfg);
    duet_free(d);
    duet_config_free(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    duet_config *cfg;
    if (duet_config_parse(buf, &cfg) == DUET_OK) {
        check_round_trip(cfg);
        duet_config_free(cfg);
    }
    size_t first = strlen(buf);
    if (first < size) key_values(buf + first + 1, buf + size);
    free(buf);
    return 0;
}
