/*
** duet.c: entry point of the duet SQLite extension.
**
** Usage, from the sqlite3 shell:
**
**     .load ./duet
**     SELECT duet_test_begin();      -- test_session.c
**     SELECT duet_txn_age();         -- txn_age.c
**     SELECT duet_upsert('t', '{"id":1,"name":"a"}');   -- upsert.c
**     SELECT duet_get_or_create('t', '{"id":1}');        -- get_or_create.c
**     SELECT * FROM duet_plan('SELECT * FROM t');       -- plan.c
**
** or from C: sqlite3_load_extension(db, "./duet", 0, &err).
** Each feature registers its own functions; see the comment at the top of
** its file.  duet_version() returns the extension's version; it also owns
** the connection's DuetConn, which SQLite frees when the connection closes.
** Loading the extension again on a connection does nothing (or fails, if an
** authorizer keeps duet from seeing that it is loaded).
*/
#include <stddef.h>

#include "duet_ext.h"
SQLITE_EXTENSION_INIT1

static void version_func(sqlite3_context* ctx, int argc, sqlite3_value** argv) {
    (void)argc;
    (void)argv;
    sqlite3_result_text(ctx, "1.0", -1, SQLITE_STATIC);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
    int sqlite3_duet_init(sqlite3* db, char** pzErrMsg, const sqlite3_api_routines* pApi) {
    SQLITE_EXTENSION_INIT2(pApi);
    /* get_or_create after upsert: it shares the cache upsert creates. */
    int (*const registrars[])(sqlite3*, DuetConn*) = {
        duet_test_session_register,
        duet_txn_age_register,
        duet_upsert_register,
        duet_get_or_create_register,
        duet_plan_register,
    };
    /* Loaded already: keep the connection's state (a test session may be
    ** active, and the hooks point at it).  Only "no such function" means
    ** it is not: registering again when the probe fails for another reason
    ** (an authorizer, a broken schema) would free the state in use. */
    sqlite3_stmt* probe = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT duet_version()", -1, &probe, NULL);
    sqlite3_finalize(probe);
    if (rc == SQLITE_OK)
        return SQLITE_OK;
    if (sqlite3_strnicmp(sqlite3_errmsg(db), "no such function", 16) != 0) {
        if (pzErrMsg)
            *pzErrMsg = sqlite3_mprintf("duet: cannot tell whether duet is loaded: %s",
                                        sqlite3_errmsg(db));
        return rc;
    }
    DuetConn* c = duet_conn_new(db);
    if (c == NULL)
        return SQLITE_NOMEM;
    /* Registered first: from here on SQLite owns c and frees it on close
    ** (or frees the previous one when the extension is loaded again). */
    rc = sqlite3_create_function_v2(db, "duet_version", 0, SQLITE_UTF8, c, version_func, NULL, NULL,
                                    duet_conn_free);
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof(registrars) / sizeof(registrars[0]); i++)
        rc = registrars[i](db, c);
    if (rc == SQLITE_OK)
        rc = duet_conn_install_trace(c);
    if (rc != SQLITE_OK && pzErrMsg)
        *pzErrMsg = sqlite3_mprintf("duet: %s", sqlite3_errstr(rc));
    return rc;
}
