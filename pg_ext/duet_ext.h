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

/*
 * A backend in a test session holds a session-level advisory lock in share
 * mode on this key (pg_locks: locktype 'advisory', classid KEY1, objid KEY2,
 * objsubid KEY3), so that other backends, the cleanup worker among them, can
 * tell from SQL that its old open transaction is a test session.  The SQL
 * advisory lock functions only make objsubid 1 or 2, so no session can take
 * this lock to exempt itself from the cleanup without calling
 * duet.test_begin().
 */
#define DUET_TEST_SESSION_LOCK_KEY1 1685415284	/* 0x64756574, "duet" */
#define DUET_TEST_SESSION_LOCK_KEY2 1
#define DUET_TEST_SESSION_LOCK_KEY3 29811	/* 0x7473, "ts" */

/* cleanup_worker.c: transaction age cleanup GUCs and background worker */
extern void duet_cleanup_init(void);

/* upsert_cache.c: plan cache invalidation for upsert and get_or_create */
extern void duet_upsert_init(void);

/* explain.c: the duet.advice_min_rows setting of plan_advice */
extern void duet_explain_init(void);

/*
 * upsert_json.c: a jsonb value's JSON type as jsonb_typeof names it, for
 * error details (upsert's rows and plan_nodes' plans are both user input)
 */
struct JsonbValue;
extern const char *duet_jbv_typename(struct JsonbValue *v);

#endif							/* DUET_EXT_H */
