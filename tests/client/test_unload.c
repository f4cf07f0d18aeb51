/*
 * test_unload.c — dlclose never unmaps libduet.
 *
 * A cancel request goes out from a detached thread (libpq 15's PQcancel has
 * no time limit), which can outlive the pool that started it; were the
 * library unmapped under that thread by a program's dlclose, the program
 * would crash.  libduet.so is linked with -z nodelete: after dlopen and
 * dlclose it is still loaded.
 */
#include "testutil.h"

#include <dlfcn.h>

static void test_dlclose_keeps_library(void **state) {
    (void)state;
    void *h = dlopen(LIBDUET_SO, RTLD_NOW | RTLD_LOCAL);
    if (!h) fail_msg("dlopen %s: %s", LIBDUET_SO, dlerror());
    assert_non_null(dlsym(h, "duet_open"));
    assert_int_equal(dlclose(h), 0);

    /* RTLD_NOLOAD finds a library only while it is mapped */
    void *again = dlopen(LIBDUET_SO, RTLD_NOW | RTLD_NOLOAD);
    if (!again) fail_msg("libduet.so was unloaded by dlclose");
    dlclose(again);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dlclose_keeps_library),
    };
    return cmocka_run_group_tests_name("unload", tests, NULL, NULL);
}
