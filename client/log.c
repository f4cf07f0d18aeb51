/*
 * log.c — the process-wide log callback (off by default) and the clock.
 *
 * The callback is read without a lock on the hot path: it is set once at
 * start-up in practice, and an atomic pointer keeps a concurrent change safe.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "internal.h"

typedef struct duet_logger {
    duet_log_fn fn;
    void *arg;
    duet_log_level min_level;
} duet_logger;

static duet_logger loggers[2];
static _Atomic(duet_logger *) current_logger;
static atomic_int next_slot;

void duet_set_log(duet_log_fn fn, void *arg, duet_log_level min_level) {
    if (!fn) {
        atomic_store(&current_logger, NULL);
        return;
    }
    /* Alternate slots so a reader never sees a half-written logger. */
    duet_logger *slot = &loggers[atomic_fetch_add(&next_slot, 1) & 1];
    slot->fn = fn;
    slot->arg = arg;
    slot->min_level = min_level;
    atomic_store(&current_logger, slot);
}

bool duet__log_enabled(duet_log_level level) {
    duet_logger *lg = atomic_load(&current_logger);
    return lg && level >= lg->min_level;
}

void duet__log(duet_log_level level, const char *name, const char *fmt, ...) {
    duet_logger *lg = atomic_load(&current_logger);
    if (!lg || level < lg->min_level) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    lg->fn(lg->arg, level, name ? name : "", line);
}

double duet__now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct timespec duet__abs_time(double at_ms) {
    struct timespec ts;
    if (at_ms < 0) at_ms = 0;
    ts.tv_sec = (time_t)(at_ms / 1000.0);
    ts.tv_nsec = (long)((at_ms - (double)ts.tv_sec * 1000.0) * 1e6);
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    if (ts.tv_nsec < 0) ts.tv_nsec = 0;
    return ts;
}

int duet__cond_init_monotonic(pthread_cond_t *cv) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}
