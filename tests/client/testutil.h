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
