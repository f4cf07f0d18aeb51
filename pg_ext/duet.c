/*-------------------------------------------------------------------------
 *
 * duet.c
 *	  Module entry point of the duet extension.
 *
 * duet gives every client language what ORMs and pools usually give one:
 * force-rollback test sessions (test_session.c), a transaction age
 * reaper (cleanup_worker.c), upsert and get_or_create (upsert.c,
 * get_or_create.c and what they share in upsert_*.c) and query-plan helpers
 * (explain.c).  This file only wires them up: _PG_init
 * lets each feature define its GUCs and install its hooks.
 *
 * Load it with shared_preload_libraries = 'duet' to get the background
 * worker; without preloading, everything else works after CREATE EXTENSION.
 *
 * pg_ext/duet.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "duet_ext.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Module load callback: each feature defines its settings and hooks.
 */
void
_PG_init(void)
{
	duet_test_session_init();
	duet_cleanup_init();
	duet_upsert_init();
	duet_explain_init();

	MarkGUCPrefixReserved("duet");
}
