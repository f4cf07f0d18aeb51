/*
 * testutil.h — helpers shared by the client tests (cmocka).
 *
 * The PostgreSQL tests need DUET_PG_URL (make check sets it to the
 * throwaway cluster); SQLite tests use a fresh temporary directory.
 */
#ifndef DUET_TESTUTIL_H
#define DUET_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "duet.h"

/* Asserts a libduet call returned DUET_OK, showing the thread's error otherwise. */
#define assert_duet_ok(call)                                                          \
    do {                                                                              \
        duet_status st_ = (call);                                                     \
        if (st_ != DUET_OK)                                                           \
            fail_msg("%s -> %s: %s", #call, duet_status_name(st_), duet_errmsg());    \
    } while (0)

/* The PostgreSQL test URL; the test fails (not skips) without it in make check. */
static inline const char *test_pg_url(void) {
    const char *url = getenv("DUET_PG_URL");
    if (!url || !*url) fail_msg("DUET_PG_URL is not set: run the tests through make check");
    return url;
}

#endif

/* ------------------------------------------------------------------ */
/* Pool, transaction and force_rollback tests (test_pool*, test_txn*,  */
/* test_force_rollback*)                                              */
/* ------------------------------------------------------------------ */
#ifndef DUET_TESTUTIL_POOL
#define DUET_TESTUTIL_POOL

#include <stdbool.h>
#include <time.h>
#include <unistd.h>

/* base URL plus more query options ("min_connections=0&max_connections=2"); free() it. */
static inline char *test_url_with(const char *base, const char *opts) {
    size_t n = strlen(base) + strlen(opts) + 2;
    char *url = malloc(n);
    if (!url) fail_msg("out of memory");
    snprintf(url, n, "%s%s%s", base, strchr(base, '?') ? "&" : "?", opts);
    return url;
}

static inline char *test_pg_url_with(const char *opts) { return test_url_with(test_pg_url(), opts); }

/* A fresh directory for SQLite files; remove it with test_rmdir. */
static inline char *test_tmpdir(void) {
    char *dir = strdup("/tmp/duettest.XXXXXX");
    if (!dir || !mkdtemp(dir)) fail_msg("mkdtemp failed");
    return dir;
}

static inline void test_rmdir(char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fail_msg("cannot remove %s", dir);
    free(dir);
}

/* sqlite:////DIR/NAME?opts; free() it. */
static inline char *test_sqlite_url(const char *dir, const char *name, const char *opts) {
    size_t n = strlen(dir) + strlen(name) + strlen(opts) + 32;
    char *url = malloc(n);
    if (!url) fail_msg("out of memory");
    snprintf(url, n, "sqlite:///%s/%s%s%s", dir, name, *opts ? "?" : "", opts);
    return url;
}

/* The first column of the first row as an integer; fails the test on error. */
static inline int64_t test_int(duet_db *db, const char *sql) {
    duet_result *r = NULL;
    int64_t v = 0;
    assert_duet_ok(duet_fetch_val(db, sql, NULL, 0, &r));
    assert_duet_ok(duet_result_int64(r, 0, 0, &v));
    duet_result_free(r);
    return v;
}

static inline void test_exec(duet_db *db, const char *sql) {
    assert_duet_ok(duet_execute(db, sql, NULL, NULL, NULL));
}

static inline void test_sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
    nanosleep(&ts, NULL);
}

static inline double test_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Whether this binary was built with AddressSanitizer (the asan suite). */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_UNDER_ASAN 1
#endif
#endif
#ifndef TEST_UNDER_ASAN
#define TEST_UNDER_ASAN 0
#endif

/* Upper bound on one test binary's run (alarm); generous, ASan included. */
#define TEST_WATCHDOG_SECONDS 300

#endif /* DUET_TESTUTIL_POOL */
