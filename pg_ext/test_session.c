/*-------------------------------------------------------------------------
 *
 * test_session.c
 *	  Force-rollback test sessions: duet.test_begin(), duet.test_end() and
 *	  duet.test_session().
 *
 * duet.test_begin() opens one outer transaction block on the connection;
 * duet.test_end() rolls it back, and so does disconnecting.  In between, a
 * ProcessUtility_hook maps the program's own transaction statements onto
 * subtransactions of that block, so that they keep their visible meaning
 * while nothing survives the session:
 *
 *	BEGIN / START TRANSACTION	a new subtransaction, the "program level"
 *	COMMIT / END				release the program level (and the levels
 *								kept below it, see below) into the block
 *	ROLLBACK / ABORT			roll back to the program level
 *	... AND CHAIN				the same, then go on in a new program level
 *	SAVEPOINT, RELEASE,			passed through inside a program transaction,
 *	ROLLBACK TO					refused outside one, as PostgreSQL does
 *	PREPARE TRANSACTION			refused
 *
 * xact.c changes the transaction state only when the statement finishes and
 * accepts one change per statement, which shapes two details.  After
 * ROLLBACK the program level is left restarted rather than released; the
 * next BEGIN reuses it when nothing ran since, otherwise it stays as a kept
 * level.  COMMIT AND CHAIN opens the new program level on top of the
 * committed one, which becomes a kept level in the same way.  Kept levels
 * hold work the program regards as committed, so merging them into the
 * block never changes what the program sees: the next COMMIT releases them
 * with the program level, and a BEGIN that finds kept levels merges them
 * while it is parsed (ts_post_parse_analyze), before its portal exists, so
 * that a program that only ever rolls back does not nest one level deeper
 * at each transaction.
 *
 * Errors: an error inside a program transaction aborts only its level; the
 * client's ROLLBACK (or ROLLBACK TO) recovers as usual.  An error outside a
 * program transaction aborts the outer block: PostgreSQL then refuses every
 * statement except COMMIT/ROLLBACK before any hook runs, so the client must
 * send ROLLBACK, which this module turns into ROLLBACK AND CHAIN of the outer
 * block: the test session stays active but everything done in it so far is
 * discarded.  Per-statement savepoints that would limit the loss to the
 * failed statement are deliberately not taken (see README: cost and gaps).
 *
 * Other backends learn that a backend is in a test session from a
 * session-level advisory lock it holds (see duet_ext.h): the cleanup worker
 * must not end such a backend although it is idle in an old transaction.
 *
 * pg_ext/test_session.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "duet_ext.h"

/* prefix of the savepoint names this module gives its levels */
#define TS_LEVEL_PREFIX "duet_test_session_"

/* a sequence's state at test_begin, restored by test_end */
typedef struct TsSequence
{
	Oid			relid;
	int64		last_value;
	bool		is_called;
} TsSequence;

/*
 * State of this backend's test session.  Levels are the subtransactions
 * this module opened; each is named TS_LEVEL_PREFIX followed by its id.
 */
static bool ts_active = false;
static TimestampTz ts_since = 0;
static bool ts_restore_sequences = false;
static List *ts_sequences = NIL;	/* TsSequence *, in TopMemoryContext */
static int	ts_levels = 0;		/* subtransactions below the client's */
static int	ts_bottom_id = 0;	/* outermost open level, 0 if none */
static int	ts_top_id = 0;		/* innermost open level, 0 if none */
static int	ts_program_id = 0;	/* level of the program transaction, or 0 */
static int	ts_next_id = 1;
static bool ts_top_reusable = false;	/* top level restarted, unused since */
static List *ts_savepoints = NIL;	/* client savepoint names, innermost
									 * first, in TopMemoryContext */

/*
 * Set while this module raises an error of its own, so that ts_error_context
 * leaves its DETAIL and HINT alone.
 */
static bool ts_own_error = false;

/*
 * The statement that called duet.test_begin(), identified by its local
 * transaction and statement start time: until it finishes, the block it
 * opened is still being opened, and xact.c cannot roll it back (it would
 * end the backend with a FATAL error), so duet.test_end() refuses to run in
 * that same statement.
 */
static LocalTransactionId ts_opening_lxid = InvalidLocalTransactionId;
static TimestampTz ts_opening_stmt = 0;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;


static void ts_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
							  bool readOnlyTree, ProcessUtilityContext context,
							  ParamListInfo params, QueryEnvironment *queryEnv,
							  DestReceiver *dest, QueryCompletion *qc);
static void ts_transaction_stmt(TransactionStmt *stmt, QueryCompletion *qc,
								PlannedStmt *pstmt, const char *queryString,
								bool readOnlyTree, ProcessUtilityContext context,
								ParamListInfo params, QueryEnvironment *queryEnv,
								DestReceiver *dest);
static void ts_ExecutorStart(QueryDesc *queryDesc, int eflags);
static void ts_post_parse_analyze(ParseState *pstate, Query *query,
								  JumbleState *jstate);
static void ts_error_context(void *arg);
static void ts_reset_levels(void);
static void ts_forget(void);
static void ts_lock(bool acquire);
static void ts_snapshot_sequences(void);
static void ts_restore_sequences_now(void);

PG_FUNCTION_INFO_V1(duet_test_begin);
PG_FUNCTION_INFO_V1(duet_test_end);
PG_FUNCTION_INFO_V1(duet_test_session);

/*
 * Installs the ProcessUtility, ExecutorStart and post_parse_analyze hooks;
 * called from _PG_init.
 */
void
duet_test_session_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ts_ProcessUtility;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = ts_ExecutorStart;
	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = ts_post_parse_analyze;
}

/* the savepoint name of level id, in a static buffer */
static const char *
ts_level_name(int id)
{
	static char name[NAMEDATALEN];

	snprintf(name, sizeof(name), TS_LEVEL_PREFIX "%d", id);
	return name;
}

/* the number of subtransactions open above the outer block */
static int
ts_expected_nest_level(void)
{
	return 1 + ts_levels + list_length(ts_savepoints);
}

/*
 * Takes or releases the session-level advisory lock that shows other
 * backends this one is in a test session.  Share mode: test sessions never
 * wait for each other.
 */
static void
ts_lock(bool acquire)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, DUET_TEST_SESSION_LOCK_KEY1,
						 DUET_TEST_SESSION_LOCK_KEY2, DUET_TEST_SESSION_LOCK_KEY3);
	if (acquire)
		(void) LockAcquire(&tag, ShareLock, true, false);
	else
		(void) LockRelease(&tag, ShareLock, true);
}

static void
ts_reset_levels(void)
{
	ts_levels = 0;
	ts_bottom_id = 0;
	ts_top_id = 0;
	ts_program_id = 0;
	ts_top_reusable = false;
	list_free_deep(ts_savepoints);
	ts_savepoints = NIL;
}

/* forgets the session: after test_end, or when its block has gone */
static void
ts_forget(void)
{
	ts_reset_levels();
	list_free_deep(ts_sequences);
	ts_sequences = NIL;
	ts_restore_sequences = false;
	ts_active = false;
	ts_lock(false);
}

/*
 * The outer block ends only through this module, except when the statement
 * that called duet.test_begin() fails after it (SELECT duet.test_begin(),
 * 1/0): the block, still being opened, is rolled back with the statement.
 * Statements must then not run as if a test session were active, since
 * they would commit: forget the session, and with raise refuse the
 * statement so that the client learns it.
 */
static bool
ts_check_alive(bool raise)
{
	if (ts_active && !IsTransactionBlock())
	{
		ts_forget();
		if (raise)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
					 errmsg("the test session ended without duet.test_end()"),
					 errdetail("Its transaction block is gone, most likely because the statement that called duet.test_begin() failed; this statement was not run."),
					 errhint("Call duet.test_begin() again.")));
	}
	return ts_active;
}

/*
 * duet.test_begin(restore_sequences boolean DEFAULT false) RETURNS void
 *
 * Opens the outer transaction block of a test session (a null argument
 * means false).  It must be the only statement of its query string and run
 * outside any transaction block, because the block it opens must be the one
 * the client's next statements run in.
 */
Datum
duet_test_begin(PG_FUNCTION_ARGS)
{
	bool		restore = !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);

	ts_own_error = true;
	if (ts_check_alive(false))
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("a test session is already active"),
				 errdetail("A connection has at most one test session."),
				 errhint("Call duet.test_end() before starting another test session.")));

	if (IsSubTransaction())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("duet.test_begin() cannot run inside a subtransaction"),
				 errdetail("A test session must own the outermost transaction block."),
				 errhint("Call duet.test_begin() as a statement of its own, outside any transaction block.")));

	if (MyXactFlags & XACT_FLAGS_PIPELINING)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("duet.test_begin() cannot run within a pipeline"),
				 errdetail("Earlier statements of the pipeline share its transaction and would become part of the test session."),
				 errhint("Send a Sync before calling duet.test_begin().")));

	if (IsTransactionBlock())
	{
		/*
		 * xact.c does not tell an explicit block from the implicit one of a
		 * multi-statement query string; the query string does.
		 */
		if (debug_query_string &&
			list_length(pg_parse_query(debug_query_string)) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("duet.test_begin() must be the only statement in its query string"),
					 errdetail("The other statements of the string run in the same implicit transaction, which a test session cannot take over."),
					 errhint("Send \"SELECT duet.test_begin()\" as a query of its own.")));
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("duet.test_begin() cannot run inside a transaction block"),
				 errdetail("A test session must own the outermost transaction block, and one is already open."),
				 errhint("End the transaction with COMMIT or ROLLBACK, then call duet.test_begin().")));
	}

	ts_own_error = false;
	if (restore)
		ts_snapshot_sequences();

	BeginTransactionBlock();

	/*
	 * Finish this statement's transaction command right after it, also in a
	 * pipeline, so the next statement already finds the block in progress.
	 */
	MyXactFlags |= XACT_FLAGS_NEEDIMMEDIATECOMMIT;

	ts_lock(true);
	ts_reset_levels();
	ts_active = true;
	ts_opening_lxid = MyProc->lxid;
	ts_opening_stmt = GetCurrentStatementStartTimestamp();
	ts_since = GetCurrentTransactionStartTimestamp();
	ts_restore_sequences = restore;

	PG_RETURN_VOID();
}

/*
 * duet.test_end() RETURNS void
 *
 * Rolls back everything done since duet.test_begin(), restoring sequences
 * first when test_begin asked for it.  Allowed inside a program transaction
 * (which is discarded too), but not from a nested block such as a PL/pgSQL
 * exception block, whose subtransaction the rollback would pull away.
 */
Datum
duet_test_end(PG_FUNCTION_ARGS)
{
	ts_own_error = true;
	if (!ts_check_alive(false))
		ereport(ERROR,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("no test session is active"),
				 errdetail("duet.test_end() ends a session started by duet.test_begin() on the same connection."),
				 errhint("Call duet.test_begin() first.")));

	if (GetCurrentTransactionNestLevel() != ts_expected_nest_level())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("duet.test_end() cannot run inside a subtransaction"),
				 errdetail("It was called from a block that opened a subtransaction of its own."),
				 errhint("Call duet.test_end() as a statement of its own.")));

	if (MyProc->lxid == ts_opening_lxid &&
		GetCurrentStatementStartTimestamp() == ts_opening_stmt)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("duet.test_end() cannot run in the statement that called duet.test_begin()"),
				 errdetail("The test session's transaction block is opened only when that statement finishes."),
				 errhint("Call duet.test_end() as a statement of its own.")));

	/*
	 * In a multi-statement query string the statements after this one would
	 * still run in the block being rolled back, and be lost silently.
	 */
	if (debug_query_string &&
		list_length(pg_parse_query(debug_query_string)) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("duet.test_end() must be the only statement in its query string"),
				 errdetail("The statements after it in the same string would run in the transaction it rolls back."),
				 errhint("Send \"SELECT duet.test_end()\" as a query of its own.")));

	ts_own_error = false;
	if (ts_restore_sequences)
		ts_restore_sequences_now();

	UserAbortTransactionBlock(false);
	MyXactFlags |= XACT_FLAGS_NEEDIMMEDIATECOMMIT;
	ts_forget();

	PG_RETURN_VOID();
}

/*
 * duet.test_session(OUT active boolean, OUT since timestamptz,
 *					 OUT depth integer, OUT restore_sequences boolean)
 *
 * depth is the program's own nesting: 0 outside a program transaction,
 * 1 inside one, plus one for each of its open savepoints.
 */
Datum
duet_test_session(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	ts_check_alive(false);
	values[0] = BoolGetDatum(ts_active);
	if (ts_active)
	{
		values[1] = TimestampTzGetDatum(ts_since);
		values[2] = Int32GetDatum(ts_program_id == 0 ? 0 :
								  1 + list_length(ts_savepoints));
		values[3] = BoolGetDatum(ts_restore_sequences);
	}
	else
	{
		nulls[1] = true;
		values[2] = Int32GetDatum(0);
		values[3] = BoolGetDatum(false);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * Records every sequence the user may reach, read and set, with its state
 * (a sequence in a schema without USAGE would make the read fail).  Reading
 * each sequence relation is the only way to get is_called and the value of
 * a sequence never called; test suites have few sequences.
 */
static void
ts_snapshot_sequences(void)
{
	SPITupleTable *seqs;
	uint64		nseqs;
	uint64		i;

	list_free_deep(ts_sequences);
	ts_sequences = NIL;

	SPI_connect();
	if (SPI_execute("SELECT c.oid"
					"  FROM pg_catalog.pg_class c"
					" WHERE c.relkind = 'S'"
					"   AND NOT pg_catalog.pg_is_other_temp_schema(c.relnamespace)"
					"   AND CASE WHEN c.relkind = 'S' THEN"
					"       pg_catalog.has_schema_privilege(c.relnamespace, 'USAGE') AND"
					"       pg_catalog.has_sequence_privilege(c.oid, 'SELECT') AND"
					"       pg_catalog.has_sequence_privilege(c.oid, 'UPDATE') END",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list sequences");
	seqs = SPI_tuptable;
	nseqs = SPI_processed;

	for (i = 0; i < nseqs; i++)
	{
		bool		isnull;
		Oid			relid;
		char	   *sql;
		TsSequence *seq;
		MemoryContext oldcxt;

		relid = DatumGetObjectId(SPI_getbinval(seqs->vals[i], seqs->tupdesc,
											   1, &isnull));
		sql = psprintf("SELECT last_value, is_called FROM %s",
					   quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid)));
		if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read sequence %u", relid);

		oldcxt = MemoryContextSwitchTo(TopMemoryContext);
		seq = palloc(sizeof(TsSequence));
		seq->relid = relid;
		seq->last_value = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc,
													  1, &isnull));
		seq->is_called = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc,
													2, &isnull));
		ts_sequences = lappend(ts_sequences, seq);
		MemoryContextSwitchTo(oldcxt);
	}
	SPI_finish();
}

/*
 * Puts every recorded sequence back with setval(), which is not rolled back
 * with the session.  Sequences dropped during the session are skipped.
 */
static void
ts_restore_sequences_now(void)
{
	ListCell   *lc;
	Oid			argtypes[3] = {REGCLASSOID, INT8OID, BOOLOID};

	if (ts_sequences == NIL)
		return;
	SPI_connect();
	foreach(lc, ts_sequences)
	{
		TsSequence *seq = lfirst(lc);
		Datum		args[3];

		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(seq->relid)))
			continue;
		args[0] = ObjectIdGetDatum(seq->relid);
		args[1] = Int64GetDatum(seq->last_value);
		args[2] = BoolGetDatum(seq->is_called);
		if (SPI_execute_with_args("SELECT pg_catalog.setval($1, $2, $3)",
								  3, argtypes, args, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not restore sequence %u", seq->relid);
	}
	SPI_finish();
}

/* runs a utility statement through the rest of the hook chain */
static void
ts_next_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * Adds DETAIL and HINT to the errors PostgreSQL raises for statements that
 * cannot run inside a transaction block (VACUUM, CREATE DATABASE, CREATE
 * INDEX CONCURRENTLY...) or for procedures that commit, so that the user
 * learns the test session is the reason.
 */
static void
ts_error_context(void *arg)
{
	int			code = geterrcode();

	if (ts_own_error)
		return;
	if (code == ERRCODE_ACTIVE_SQL_TRANSACTION ||
		code == ERRCODE_INVALID_TRANSACTION_TERMINATION)
	{
		errdetail("A duet test session is active: every statement runs inside the one transaction block that duet.test_end() rolls back.");
		errhint("Run this statement outside the test session, after duet.test_end().");
	}
}

/*
 * ProcessUtility hook: outside a test session, or for statements other than
 * the client's own transaction statements, it only chains on (adding the
 * error context above); the client's transaction statements are mapped by
 * ts_transaction_stmt.
 */
static void
ts_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
				  bool readOnlyTree, ProcessUtilityContext context,
				  ParamListInfo params, QueryEnvironment *queryEnv,
				  DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	ErrorContextCallback errcallback;

	if (!ts_active || !ts_check_alive(true))
	{
		ts_next_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							   params, queryEnv, dest, qc);
		return;
	}

	if (IsA(parsetree, TransactionStmt) && context == PROCESS_UTILITY_TOPLEVEL)
	{
		ts_transaction_stmt((TransactionStmt *) parsetree, qc, pstmt,
							queryString, readOnlyTree, context, params,
							queryEnv, dest);
		return;
	}

	/* any other statement may leave state that a reuse would roll back */
	ts_top_reusable = false;
	ts_own_error = false;

	errcallback.callback = ts_error_context;
	errcallback.arg = NULL;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	ts_next_ProcessUtility(pstmt, queryString, readOnlyTree, context,
						   params, queryEnv, dest, qc);

	error_context_stack = errcallback.previous;
}

/*
 * ExecutorStart hook: only makes sure that a test session believed active
 * still has its block (ts_check_alive); one test of a flag otherwise.
 */
static void
ts_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (ts_active)
		ts_check_alive(true);
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/*
 * post_parse_analyze hook: when the client's BEGIN (or START TRANSACTION)
 * is parsed at top level outside a program transaction, merges the kept
 * levels into the block, so that the BEGIN opens its level directly above
 * it and programs that roll back again and again keep a constant depth.
 *
 * Kept levels hold only work the program regards as committed, so merging
 * them is invisible to it, whenever it happens (with the extended protocol,
 * Parse may come long before the BEGIN is executed, or the BEGIN may never
 * be).  xact.c allows one deferred change per statement and the BEGIN needs
 * it, so the levels are released at once here.  That is safe at this point
 * only: parse analysis of a transaction statement holds no relation, no
 * snapshot and no portal, so no resource owner of a released level is saved
 * anywhere.  The caller of parse analysis switches back afterwards to the
 * memory context that was current at the start of the command, which is the
 * innermost level's: a chunk is left in it so that the release keeps it
 * (an empty one would be freed) until the block ends.  That context (a few
 * kilobytes) is what a merging BEGIN leaves behind until test_end, where
 * each level used to stay open as a whole subtransaction.
 */
static void
ts_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	TransactionStmt *stmt;

	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);

	if (!ts_active || ts_program_id != 0 || ts_levels == 0)
		return;
	if (query->commandType != CMD_UTILITY || query->utilityStmt == NULL ||
		!IsA(query->utilityStmt, TransactionStmt))
		return;
	stmt = (TransactionStmt *) query->utilityStmt;
	if (stmt->kind != TRANS_STMT_BEGIN && stmt->kind != TRANS_STMT_START)
		return;

	/* only a client's own statement: not one parsed by SPI or a function */
	if (ActivePortal != NULL || pstate->p_sourcetext != debug_query_string)
		return;
	if (!IsTransactionBlock() || IsAbortedTransactionBlockState() ||
		GetCurrentTransactionNestLevel() != ts_expected_nest_level())
		return;

	/* a single level that BEGIN will reuse needs no merging */
	if (ts_levels == 1 && ts_top_reusable &&
		!TransactionIdIsValid(GetCurrentTransactionIdIfAny()))
		return;

	{
		MemoryContext oldcxt = CurrentMemoryContext;

		ts_top_reusable = false;
		/* the innermost level's context is the one our caller returns to */
		(void) MemoryContextAlloc(CurTransactionContext, 1);
		while (ts_levels > 0)
		{
			ReleaseCurrentSubTransaction();
			ts_levels--;
		}
		MemoryContextSwitchTo(oldcxt);
		ts_reset_levels();
	}
}

/* a client savepoint name must not be one of ours */
static void
ts_check_savepoint_name(const char *name)
{
	if (strncmp(name, TS_LEVEL_PREFIX, strlen(TS_LEVEL_PREFIX)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("savepoint name \"%s\" is reserved in a test session", name),
				 errdetail("duet names its own savepoints with the prefix \"%s\".", TS_LEVEL_PREFIX),
				 errhint("Use another savepoint name.")));
}

/* position of name in ts_savepoints (innermost first), or -1 */
static int
ts_find_savepoint(const char *name)
{
	ListCell   *lc;

	foreach(lc, ts_savepoints)
	{
		if (strcmp((char *) lfirst(lc), name) == 0)
			return foreach_current_index(lc);
	}
	return -1;
}

/* drops the first n (innermost) entries of ts_savepoints */
static void
ts_pop_savepoints(int n)
{
	while (n-- > 0 && ts_savepoints != NIL)
	{
		pfree(linitial(ts_savepoints));
		ts_savepoints = list_delete_first(ts_savepoints);
	}
}

static void
ts_no_savepoint_outside(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
			 errmsg("%s can only be used in transaction blocks", what),
			 errdetail("A test session is active, but the program has not started a transaction with BEGIN.")));
}

/*
 * Opens a new level on top of the current one and makes it the program
 * transaction's.
 */
static void
ts_open_program_level(void)
{
	int			id = ts_next_id++;

	DefineSavepoint(ts_level_name(id));
	ts_levels++;
	if (ts_bottom_id == 0)
		ts_bottom_id = id;
	ts_top_id = id;
	ts_program_id = id;
	ts_top_reusable = false;
}

/*
 * ROLLBACK (or COMMIT) after an error outside a program transaction: the
 * outer block is aborted and no level is left to roll back to, so roll the
 * whole block back and chain a new one.  The session stays active.
 */
static void
ts_restart_session(QueryCompletion *qc)
{
	UserAbortTransactionBlock(true);
	ts_reset_levels();
	if (qc)
		qc->commandTag = CMDTAG_ROLLBACK;
	ereport(NOTICE,
			(errmsg("test session rolled back to its start"),
			 errdetail("An error outside a program transaction aborted the test session's transaction; everything done since duet.test_begin() was discarded.")));
}

/* ROLLBACK, or COMMIT of an aborted program transaction */
static void
ts_rollback_program(bool chain, QueryCompletion *qc)
{
	RollbackToSavepoint(ts_level_name(ts_program_id));
	ts_pop_savepoints(list_length(ts_savepoints));
	ts_top_id = ts_program_id;
	if (!chain)
	{
		/* the level stays open, restarted and empty: BEGIN may reuse it */
		ts_program_id = 0;
		ts_top_reusable = true;
	}
	if (qc)
		qc->commandTag = CMDTAG_ROLLBACK;
}

/*
 * Maps one top-level transaction statement of the client onto the levels of
 * the test session (see the file header).  State changes follow xact.c's
 * calls, so that an error raised by xact.c leaves them untouched.
 */
static void
ts_transaction_stmt(TransactionStmt *stmt, QueryCompletion *qc,
					PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest)
{
	bool		aborted = IsAbortedTransactionBlockState();
	int			pos;

	switch (stmt->kind)
	{
		case TRANS_STMT_BEGIN:
		case TRANS_STMT_START:
			/* options (isolation level, read only) cannot apply to a level */
			if (ts_program_id != 0)
				ereport(WARNING,
						(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
						 errmsg("there is already a transaction in progress")));
			else if (ts_top_reusable &&
					 !TransactionIdIsValid(GetCurrentTransactionIdIfAny()))
			{
				/*
				 * The level a ROLLBACK left behind saw no utility statement
				 * and no write since: reuse it, so that loops of BEGIN ...
				 * ROLLBACK do not nest deeper and deeper.  (A plain SELECT
				 * in between, say of set_config(), would be undone by this
				 * transaction's ROLLBACK: an accepted corner.)
				 */
				ts_program_id = ts_top_id;
				ts_top_reusable = false;
			}
			else
				ts_open_program_level();
			break;

		case TRANS_STMT_COMMIT:
			if (ts_program_id == 0)
			{
				if (aborted)
					ts_restart_session(qc);
				else if (stmt->chain)
					ts_no_savepoint_outside("COMMIT AND CHAIN");
				else
					ereport(WARNING,
							(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
							 errmsg("there is no transaction in progress")));
			}
			else if (aborted)
				ts_rollback_program(stmt->chain, qc);
			else if (stmt->chain)
			{
				/* the committed levels stay open below, kept */
				ts_levels += list_length(ts_savepoints);
				list_free_deep(ts_savepoints);
				ts_savepoints = NIL;
				ts_open_program_level();
			}
			else
			{
				ReleaseSavepoint(ts_level_name(ts_bottom_id));
				ts_reset_levels();
			}
			break;

		case TRANS_STMT_ROLLBACK:
			if (ts_program_id == 0)
			{
				if (aborted)
					ts_restart_session(qc);
				else if (stmt->chain)
					ts_no_savepoint_outside("ROLLBACK AND CHAIN");
				else
					ereport(WARNING,
							(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
							 errmsg("there is no transaction in progress")));
			}
			else
				ts_rollback_program(stmt->chain, qc);
			break;

		case TRANS_STMT_SAVEPOINT:
			if (ts_program_id == 0)
				ts_no_savepoint_outside("SAVEPOINT");
			ts_check_savepoint_name(stmt->savepoint_name);
			ts_next_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								   params, queryEnv, dest, qc);
			{
				/* the list outlives the statement, like the names in it */
				MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

				ts_savepoints = lcons(pstrdup(stmt->savepoint_name),
									  ts_savepoints);
				MemoryContextSwitchTo(oldcxt);
			}
			break;

		case TRANS_STMT_RELEASE:
		case TRANS_STMT_ROLLBACK_TO:
			if (ts_program_id == 0)
				ts_no_savepoint_outside(stmt->kind == TRANS_STMT_RELEASE ?
										"RELEASE SAVEPOINT" : "ROLLBACK TO SAVEPOINT");
			ts_check_savepoint_name(stmt->savepoint_name);

			/*
			 * Look the name up among the program's savepoints only: xact.c
			 * would go on searching into the levels below.
			 */
			pos = ts_find_savepoint(stmt->savepoint_name);
			if (pos < 0)
				ereport(ERROR,
						(errcode(ERRCODE_S_E_INVALID_SPECIFICATION),
						 errmsg("savepoint \"%s\" does not exist",
								stmt->savepoint_name)));
			ts_next_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								   params, queryEnv, dest, qc);
			ts_pop_savepoints(stmt->kind == TRANS_STMT_RELEASE ? pos + 1 : pos);
			break;

		case TRANS_STMT_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("PREPARE TRANSACTION cannot be used in a test session"),
					 errdetail("Everything done in a test session is rolled back by duet.test_end(), so there is nothing to prepare for two-phase commit."),
					 errhint("Call duet.test_end() first, or test two-phase commit without a test session.")));
			break;

		case TRANS_STMT_COMMIT_PREPARED:
		case TRANS_STMT_ROLLBACK_PREPARED:
			ereport(ERROR,
					(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
					 errmsg("%s cannot run inside a transaction block",
							stmt->kind == TRANS_STMT_COMMIT_PREPARED ?
							"COMMIT PREPARED" : "ROLLBACK PREPARED"),
					 errdetail("A duet test session is active: every statement runs inside the one transaction block that duet.test_end() rolls back."),
					 errhint("Run this statement outside the test session, after duet.test_end().")));
			break;
	}
}
