/*
** duet.c: entry point of the duet SQLite extension.
**
** Usage, from the sqlite3 shell:
**
**     .load ./duet
**     SELECT duet_test_begin();      -- test_session.c
**     SELECT duet_txn_age();         -- txn_age.c
**     SELECT duet_upsert('t', '{"id":1,"name":"a"}');   -- upsert.c
**     SELECT * FROM duet_plan('SELECT * FROM t');       -- plan.c
**
** or from C: sqlite3_load_extension(db, "./duet", 0, &err).
** Each feature registers its own functions; see the comment at the top of
** its file.
*/
#include <stddef.h>

#include "duet_ext.h"
SQLITE_EXTENSION_INIT1

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_duet_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
    SQLITE_EXTENSION_INIT2(pApi);
    int (*const registrars[])(sqlite3 *) = {
        duet_test_session_register,
        duet_txn_age_register,
        duet_upsert_register,
        duet_plan_register,
    };
    for (size_t i = 0; i < sizeof(registrars) / sizeof(registrars[0]); i++) {
        int rc = registrars[i](db);
        if (rc != SQLITE_OK) {
            if (pzErrMsg) *pzErrMsg = sqlite3_mprintf("duet: %s", sqlite3_errstr(rc));
            return rc;
        }
    }
    return SQLITE_OK;
}
