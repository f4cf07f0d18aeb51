/*-------------------------------------------------------------------------
 *
 * duet_ext.h
 *	  Entry points shared between the files of the duet extension.
 *
 * Each feature lives in its own file and exposes one init function that
 * _PG_init calls; everything else a feature needs stays static in its file.
 *
 * pg_ext/duet_ext.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef DUET_EXT_H
#define DUET_EXT_H

/* test_session.c: force-rollback test sessions (ProcessUtility_hook) */
extern void duet_test_session_init(void);

/* test_session.c: true while a test session is active in this backend */
extern bool duet_test_session_active(void);

/* cleanup_worker.c: transaction age cleanup GUCs and background worker */
extern void duet_cleanup_init(void);

/* upsert.c: plan cache invalidation for upsert and get_or_create */
extern void duet_upsert_init(void);

#endif							/* DUET_EXT_H */
