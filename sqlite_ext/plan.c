/* placeholder: plan (issue 6) */
#include "duet_ext.h"
SQLITE_EXTENSION_INIT3

int duet_plan_register(sqlite3 *db) {
    (void)db;
    return SQLITE_OK;
}
