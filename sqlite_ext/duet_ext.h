/*
** duet_ext.h: the init functions of the duet SQLite extension's features.
** Each feature file registers its functions on one connection.
*/
#ifndef DUET_SQLITE_EXT_H
#define DUET_SQLITE_EXT_H

#include "sqlite3ext.h"

/* Every feature file defines SQLITE_EXTENSION_INIT3 to share the API table. */
int duet_test_session_register(sqlite3 *db);
int duet_txn_age_register(sqlite3 *db);
int duet_upsert_register(sqlite3 *db);
int duet_plan_register(sqlite3 *db);

#endif
