/*-------------------------------------------------------------------------
 *
 * cleanup_worker.c
 *	  Transaction age cleanup: a background worker that ends client backends
 *	  whose transaction is older than duet.transaction_timeout, the on-demand
 *	  duet.cleanup_transactions(), and the log of what both did.
 *
 * Every duet.cleanup_interval the worker runs one statement that selects the
 * client backends over the age limit from pg_stat_activity and calls
 * pg_terminate_backend() on them in the same query, so that no backend is
 * picked on stale information from an earlier query.  Terminate, not cancel:
 * a cancelled query leaves its transaction open with the same start time,
 * and a session idle in transaction ignores cancels.
 *
 * Never ended: backends that are not client backends (autovacuum, walsenders,
 * background workers, this worker), backends in a duet test session (they
 * hold the advisory lock described in duet_ext.h), and the exempt roles,
 * databases and application names; superusers only when
 * duet.cleanup_superusers is on.
 *
 * The log is a ring of the last actions in shared memory, read with
 * duet.cleanup_log() from any database that has the extension: the worker's
 * own database (duet.cleanup_database) need not have it, and no table is
 * created behind the administrator's back.  The ring is lost at restart; the
 * server log keeps a LOG line for every backend ended.  With
 * shared_preload_libraries=duet the ring is requested at startup; without,
 * a smaller ring is carved from the spare shared memory on first use.
 *
 * pg_ext/cleanup_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "duet_ext.h"

#define CLEANUP_QUERY_LEN	256
#define CLEANUP_RING_PRELOAD	512
#define CLEANUP_RING_LATE	32
#define CLEANUP_RESTART_SECS	10

/* one action, as duet.cleanup_log() shows it */
typedef struct CleanupLogEntry
{
	TimestampTz logged_at;
	char		source[16];		/* "worker" or "function" */
	char		action[16];
	int			pid;
	NameData	usename;
	NameData	datname;
	char		application[NAMEDATALEN];
	TimestampTz xact_start;
	Interval	age;
	char		query[CLEANUP_QUERY_LEN];
} CleanupLogEntry;

typedef struct CleanupShared
{
	LWLock		lock;			/* protects everything below */
	int			tranche_id;
	pid_t		worker_pid;		/* the running worker, or 0 */
	int			capacity;
	uint64		count;			/* entries ever written */
	CleanupLogEntry entries[FLEXIBLE_ARRAY_MEMBER];
} CleanupShared;

/* settings */
static int	cleanup_transaction_timeout = 0;
static int	cleanup_interval = 10000;
static char *cleanup_database = NULL;
static char *cleanup_exempt_roles = NULL;
static char *cleanup_exempt_databases = NULL;
static char *cleanup_exempt_applications = NULL;
static bool cleanup_superusers = false;

static CleanupShared *cleanup_shared = NULL;
static bool cleanup_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

PGDLLEXPORT void duet_cleanup_worker_main(Datum main_arg);

PG_FUNCTION_INFO_V1(duet_cleanup_transactions);
PG_FUNCTION_INFO_V1(duet_cleanup_log);
PG_FUNCTION_INFO_V1(duet_cleanup_log_reset);
PG_FUNCTION_INFO_V1(duet_start_cleanup_worker);

/*
 * Selects the client backends over the age limit and, unless dry_run, ends
 * them in the same statement.  $1 max age, $2 include superusers, $3..$5 the
 * exempt roles, databases and application_name LIKE patterns (comma-
 * separated lists), $6 dry run, $7 the role on whose behalf it runs: as in
 * pg_stat_activity, it sees the query text only of backends of roles whose
 * privileges it has, unless it has those of pg_read_all_stats.  Ages are
 * measured at statement start.
 */
#define CLEANUP_SQL \
	"WITH candidates AS (" \
	" SELECT a.pid, a.usename, a.datname, a.application_name, a.xact_start," \
	"        pg_catalog.statement_timestamp() - a.xact_start AS age," \
	"        CASE WHEN pg_catalog.pg_has_role($7, a.usesysid, 'USAGE') OR" \
	"                  pg_catalog.pg_has_role($7, 'pg_read_all_stats', 'USAGE')" \
	"             THEN a.query ELSE '<insufficient privilege>' END AS query" \
	"   FROM pg_catalog.pg_stat_activity a" \
	"  WHERE a.backend_type = 'client backend'" \
	"    AND a.pid <> pg_catalog.pg_backend_pid()" \
	"    AND a.xact_start < pg_catalog.statement_timestamp() - $1" \
	"    AND ($2 OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r" \
	"                            WHERE r.oid = a.usesysid AND r.rolsuper))" \
	"    AND NOT (a.usename::text = ANY (SELECT pg_catalog.btrim(x) FROM" \
	"             pg_catalog.unnest(pg_catalog.string_to_array($3, ',')) AS x))" \
	"    AND NOT (a.datname::text = ANY (SELECT pg_catalog.btrim(x) FROM" \
	"             pg_catalog.unnest(pg_catalog.string_to_array($4, ',')) AS x))" \
	"    AND NOT (a.application_name LIKE ANY (SELECT pg_catalog.btrim(x) FROM" \
	"             pg_catalog.unnest(pg_catalog.string_to_array($5, ',')) AS x))" \
	"    AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l" \
	"                     WHERE l.locktype = 'advisory' AND l.pid = a.pid" \
	"                       AND l.classid = " CppAsString2(DUET_TEST_SESSION_LOCK_KEY1) \
	"                       AND l.objid = " CppAsString2(DUET_TEST_SESSION_LOCK_KEY2) \
	"                       AND l.objsubid = " CppAsString2(DUET_TEST_SESSION_LOCK_KEY3) ")" \
	")" \
	"SELECT c.pid, c.usename, c.datname, c.application_name, c.xact_start," \
	"       c.age, c.query," \
	"       CASE WHEN $6 THEN 'would terminate'" \
	"            WHEN pg_catalog.pg_terminate_backend(c.pid) THEN 'terminated'" \
	"            ELSE 'gone' END AS action" \
	"  FROM candidates c ORDER BY c.xact_start, c.pid"

#define CLEANUP_NCOLS 8

static Size
cleanup_shmem_size(int capacity)
{
	return add_size(offsetof(CleanupShared, entries),
					mul_size(capacity, sizeof(CleanupLogEntry)));
}

static void
cleanup_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(cleanup_shmem_size(CLEANUP_RING_PRELOAD));
}

/*
 * Finds or creates the shared state.  Called at startup under preload, and
 * lazily otherwise: then the ring comes out of the spare shared memory that
 * PostgreSQL keeps for small structures, hence its smaller size.
 */
static void
cleanup_shmem_attach(void)
{
	bool		found;
	int			capacity = cleanup_preloaded ? CLEANUP_RING_PRELOAD : CLEANUP_RING_LATE;

	if (cleanup_shared)
		return;
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	cleanup_shared = ShmemInitStruct("duet cleanup",
									 cleanup_shmem_size(capacity), &found);
	if (!found)
	{
		cleanup_shared->tranche_id = LWLockNewTrancheId();
		LWLockInitialize(&cleanup_shared->lock, cleanup_shared->tranche_id);
		cleanup_shared->worker_pid = 0;
		cleanup_shared->capacity = capacity;
		cleanup_shared->count = 0;
	}
	LWLockRelease(AddinShmemInitLock);
	LWLockRegisterTranche(cleanup_shared->tranche_id, "duet_cleanup");
}

static void
cleanup_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	cleanup_shmem_attach();
}

/*
 * The worker as both the preloaded and the on-demand registration start it.
 */
static void
cleanup_worker_describe(BackgroundWorker *worker)
{
	memset(worker, 0, sizeof(*worker));
	worker->bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = CLEANUP_RESTART_SECS;
	strlcpy(worker->bgw_library_name, "duet", BGW_MAXLEN);
	strlcpy(worker->bgw_function_name, "duet_cleanup_worker_main", BGW_MAXLEN);
	strlcpy(worker->bgw_name, "duet cleanup worker", BGW_MAXLEN);
	strlcpy(worker->bgw_type, "duet cleanup worker", BGW_MAXLEN);
}

/*
 * Defines the settings, and under shared_preload_libraries requests the
 * shared memory and registers the worker; called from _PG_init.
 */
void
duet_cleanup_init(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("duet.transaction_timeout",
							"Ends client backends whose transaction is older than this.",
							"The duet cleanup worker terminates them; 0 turns the cleanup off.",
							&cleanup_transaction_timeout,
							0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("duet.cleanup_interval",
							"Time between two runs of the duet cleanup worker.",
							"A transaction is ended at most this long after it reaches duet.transaction_timeout.",
							&cleanup_interval,
							10000, 10, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("duet.cleanup_database",
							   "Database the duet cleanup worker connects to.",
							   "The worker sees backends of all databases from any one; a change restarts it.",
							   &cleanup_database,
							   "postgres",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("duet.cleanup_exempt_roles",
							   "Comma-separated roles whose transactions are never ended.",
							   NULL,
							   &cleanup_exempt_roles,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("duet.cleanup_exempt_databases",
							   "Comma-separated databases whose transactions are never ended.",
							   NULL,
							   &cleanup_exempt_databases,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("duet.cleanup_exempt_applications",
							   "Comma-separated LIKE patterns of application_name values whose transactions are never ended.",
							   NULL,
							   &cleanup_exempt_applications,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("duet.cleanup_superusers",
							 "Lets the duet cleanup worker end transactions of superusers.",
							 NULL,
							 &cleanup_superusers,
							 false,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	cleanup_preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = cleanup_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = cleanup_shmem_startup;

	cleanup_worker_describe(&worker);
	RegisterBackgroundWorker(&worker);
}

/* appends one acted-on row of CLEANUP_SQL to the ring, and to the server log */
static void
cleanup_log_row(HeapTuple tuple, TupleDesc desc, const char *source)
{
	CleanupLogEntry *e;
	bool		isnull;
	Datum		d;

	cleanup_shmem_attach();
	LWLockAcquire(&cleanup_shared->lock, LW_EXCLUSIVE);
	e = &cleanup_shared->entries[cleanup_shared->count % cleanup_shared->capacity];
	memset(e, 0, sizeof(*e));
	e->logged_at = GetCurrentTimestamp();
	strlcpy(e->source, source, sizeof(e->source));
	e->pid = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
	d = SPI_getbinval(tuple, desc, 2, &isnull);
	if (!isnull)
		namestrcpy(&e->usename, NameStr(*DatumGetName(d)));
	d = SPI_getbinval(tuple, desc, 3, &isnull);
	if (!isnull)
		namestrcpy(&e->datname, NameStr(*DatumGetName(d)));
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	if (!isnull)
		text_to_cstring_buffer(DatumGetTextPP(d), e->application, sizeof(e->application));
	e->xact_start = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 5, &isnull));
	e->age = *DatumGetIntervalP(SPI_getbinval(tuple, desc, 6, &isnull));
	d = SPI_getbinval(tuple, desc, 7, &isnull);
	if (!isnull)
		text_to_cstring_buffer(DatumGetTextPP(d), e->query, sizeof(e->query));
	d = SPI_getbinval(tuple, desc, 8, &isnull);
	text_to_cstring_buffer(DatumGetTextPP(d), e->action, sizeof(e->action));
	cleanup_shared->count++;
	LWLockRelease(&cleanup_shared->lock);

	ereport(LOG,
			(errmsg("duet cleanup: %s backend %d of user \"%s\" in database \"%s\", transaction age %s",
					e->action, e->pid, NameStr(e->usename), NameStr(e->datname),
					DatumGetCString(DirectFunctionCall1(interval_out,
														IntervalPGetDatum(&e->age)))),
			 errdetail("Requested by the %s.", source)));
}

/*
 * Runs CLEANUP_SQL; the caller has connected SPI and holds a snapshot.
 * Logs every backend ended; rows go to tupstore when it is given.
 */
static void
cleanup_scan(Interval *max_age, bool include_superusers, bool dry_run,
			 Oid viewer, const char *source, Tuplestorestate *tupstore,
			 TupleDesc tupdesc)
{
	Oid			argtypes[7] = {INTERVALOID, BOOLOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, OIDOID};
	Datum		args[7];
	uint64		i;
	int			save_nestlevel;

	args[0] = IntervalPGetDatum(max_age);
	args[1] = BoolGetDatum(include_superusers);
	args[2] = CStringGetTextDatum(cleanup_exempt_roles ? cleanup_exempt_roles : "");
	args[3] = CStringGetTextDatum(cleanup_exempt_databases ? cleanup_exempt_databases : "");
	args[4] = CStringGetTextDatum(cleanup_exempt_applications ? cleanup_exempt_applications : "");
	args[5] = BoolGetDatum(dry_run);
	args[6] = ObjectIdGetDatum(viewer);

	/*
	 * The query runs as a superuser: with the caller's search_path, an
	 * operator or function of a schema placed before pg_catalog would run
	 * with superuser rights.  As for a function's SET clause, an error
	 * restores the setting with the transaction.
	 */
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);

	if (SPI_execute_with_args(CLEANUP_SQL, 7, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "duet cleanup query failed");
	AtEOXact_GUC(true, save_nestlevel);

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];

		if (!dry_run)
			cleanup_log_row(tuple, SPI_tuptable->tupdesc, source);
		if (tupstore)
		{
			Datum		values[CLEANUP_NCOLS];
			bool		nulls[CLEANUP_NCOLS];

			heap_deform_tuple(tuple, SPI_tuptable->tupdesc, values, nulls);
			tuplestore_putvalues(tupstore, tupdesc, values, nulls);
		}
	}
}

static void
cleanup_worker_detach(int code, Datum arg)
{
	LWLockAcquire(&cleanup_shared->lock, LW_EXCLUSIVE);
	if (cleanup_shared->worker_pid == MyProcPid)
		cleanup_shared->worker_pid = 0;
	LWLockRelease(&cleanup_shared->lock);
}

/*
 * Entry point of the cleanup worker.  Sleeps duet.cleanup_interval on its
 * latch (a reload wakes it), then, when duet.transaction_timeout is set,
 * runs one cleanup in its own transaction.
 */
void
duet_cleanup_worker_main(Datum main_arg)
{
	char	   *connected_db;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	cleanup_shmem_attach();
	LWLockAcquire(&cleanup_shared->lock, LW_EXCLUSIVE);
	if (cleanup_shared->worker_pid != 0 &&
		cleanup_shared->worker_pid != MyProcPid &&
		BackendPidGetProc(cleanup_shared->worker_pid) != NULL)
	{
		LWLockRelease(&cleanup_shared->lock);
		ereport(LOG,
				(errmsg("duet cleanup worker not started: another one is running with PID %d",
						(int) cleanup_shared->worker_pid)));
		proc_exit(0);
	}
	cleanup_shared->worker_pid = MyProcPid;
	LWLockRelease(&cleanup_shared->lock);
	before_shmem_exit(cleanup_worker_detach, (Datum) 0);

	BackgroundWorkerInitializeConnection(cleanup_database, NULL, 0);
	connected_db = pstrdup(cleanup_database);
	pgstat_report_appname("duet cleanup worker");

	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 cleanup_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (strcmp(connected_db, cleanup_database) != 0)
			{
				/* a backend cannot change database: let the postmaster restart us */
				ereport(LOG,
						(errmsg("duet cleanup worker restarting to connect to database \"%s\"",
								cleanup_database)));
				proc_exit(1);
			}
		}

		if (cleanup_transaction_timeout > 0)
		{
			Interval	max_age;

			memset(&max_age, 0, sizeof(max_age));
			max_age.time = (int64) cleanup_transaction_timeout * INT64CONST(1000);

			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			SPI_connect();
			PushActiveSnapshot(GetTransactionSnapshot());
			pgstat_report_activity(STATE_RUNNING, "duet cleanup");
			cleanup_scan(&max_age, cleanup_superusers, false, GetUserId(),
						 "worker", NULL, NULL);
			SPI_finish();
			PopActiveSnapshot();
			CommitTransactionCommand();
			pgstat_report_stat(false);
			pgstat_report_activity(STATE_IDLE, NULL);
		}
	}
}

/*
 * duet.cleanup_transactions(max_age interval, dry_run boolean DEFAULT true)
 *
 * The worker's cleanup on demand, with the same exemptions, returning the
 * backends acted on.  EXECUTE is granted to pg_signal_backend only.  The
 * query runs as the bootstrap superuser because pg_stat_activity hides the
 * transaction start of other users' backends; superusers' backends are
 * therefore filtered out here unless the caller is a superuser.
 */
Datum
duet_cleanup_transactions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Interval   *max_age;
	bool		dry_run;
	bool		caller_is_superuser = superuser();
	Oid			save_userid;
	int			save_sec_context;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("max_age must not be null")));
	max_age = PG_GETARG_INTERVAL_P(0);
	dry_run = PG_ARGISNULL(1) ? true : PG_GETARG_BOOL(1);

	if (max_age->time < 0 || max_age->day < 0 || max_age->month < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_age must not be negative")));

	if (!has_privs_of_role(GetUserId(), ROLE_PG_SIGNAL_BACKEND))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to end other sessions' transactions"),
				 errdetail("Only roles with privileges of the \"pg_signal_backend\" role may call duet.cleanup_transactions()."),
				 errhint("Ask an administrator to GRANT pg_signal_backend to your role.")));

	InitMaterializedSRF(fcinfo, 0);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		SPI_connect();
		cleanup_scan(max_age, caller_is_superuser, dry_run, save_userid,
					 "function", rsinfo->setResult, rsinfo->setDesc);
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();

	return (Datum) 0;
}

/*
 * duet.cleanup_log() RETURNS SETOF record: the ring, oldest first.  The
 * query text of a backend is shown to roles that pg_stat_activity would
 * show it to.
 */
Datum
duet_cleanup_log(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CleanupLogEntry *entries;
	bool		read_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	uint64		first;
	int			n = 0;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	cleanup_shmem_attach();

	/* copied out first: no catalog lookup while the lock is held */
	entries = palloc(sizeof(CleanupLogEntry) * cleanup_shared->capacity);
	LWLockAcquire(&cleanup_shared->lock, LW_SHARED);
	first = cleanup_shared->count > (uint64) cleanup_shared->capacity ?
		cleanup_shared->count - cleanup_shared->capacity : 0;
	for (; first < cleanup_shared->count; first++)
		entries[n++] = cleanup_shared->entries[first % cleanup_shared->capacity];
	LWLockRelease(&cleanup_shared->lock);

	for (i = 0; i < n; i++)
	{
		CleanupLogEntry *e = &entries[i];
		Oid			role = get_role_oid(NameStr(e->usename), true);
		Datum		values[10];
		bool		nulls[10] = {0};

		values[0] = TimestampTzGetDatum(e->logged_at);
		values[1] = CStringGetTextDatum(e->source);
		values[2] = CStringGetTextDatum(e->action);
		values[3] = Int32GetDatum(e->pid);
		values[4] = NameGetDatum(&e->usename);
		values[5] = NameGetDatum(&e->datname);
		values[6] = CStringGetTextDatum(e->application);
		values[7] = TimestampTzGetDatum(e->xact_start);
		values[8] = IntervalPGetDatum(&e->age);
		/* the query text is shown as pg_stat_activity would show it */
		if (read_all || (OidIsValid(role) && has_privs_of_role(GetUserId(), role)))
			values[9] = CStringGetTextDatum(e->query);
		else
			values[9] = CStringGetTextDatum("<insufficient privilege>");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	return (Datum) 0;
}

/*
 * duet.cleanup_log_reset() RETURNS bigint: empties the ring, returns how
 * many entries it held.
 */
Datum
duet_cleanup_log_reset(PG_FUNCTION_ARGS)
{
	int64		n;

	cleanup_shmem_attach();
	LWLockAcquire(&cleanup_shared->lock, LW_EXCLUSIVE);
	n = (int64) Min(cleanup_shared->count, (uint64) cleanup_shared->capacity);
	cleanup_shared->count = 0;
	LWLockRelease(&cleanup_shared->lock);
	PG_RETURN_INT64(n);
}

/*
 * duet.start_cleanup_worker() RETURNS integer: starts the worker on a
 * cluster without shared_preload_libraries=duet and returns its PID, or
 * returns the PID of the one already running.  The postmaster restarts a
 * worker that fails, but not across a server restart.
 */
Datum
duet_start_cleanup_worker(PG_FUNCTION_ARGS)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;
	BgwHandleStatus status;

	cleanup_shmem_attach();
	LWLockAcquire(&cleanup_shared->lock, LW_SHARED);
	pid = cleanup_shared->worker_pid;
	LWLockRelease(&cleanup_shared->lock);
	if (pid != 0 && BackendPidGetProc(pid) != NULL)
	{
		ereport(NOTICE,
				(errmsg("the duet cleanup worker is already running")));
		PG_RETURN_INT32((int32) pid);
	}

	cleanup_worker_describe(&worker);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not register the duet cleanup worker"),
				 errhint("Raise max_worker_processes.")));

	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status != BGWH_STARTED)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not start the duet cleanup worker"),
				 errhint("See the server log for the reason.")));

	/*
	 * Claim the slot for the new worker now, so that a second call made
	 * before the worker got there finds it running.
	 */
	LWLockAcquire(&cleanup_shared->lock, LW_EXCLUSIVE);
	if (cleanup_shared->worker_pid == 0 ||
		BackendPidGetProc(cleanup_shared->worker_pid) == NULL)
		cleanup_shared->worker_pid = pid;
	LWLockRelease(&cleanup_shared->lock);
	PG_RETURN_INT32((int32) pid);
}
