/*-------------------------------------------------------------------------
 *
 * upsert.c
 *	  duet.upsert and duet.upsert_many.
 *
 * Every ORM reimplements "insert or update this row"; these functions do it
 * once, inside the server, for any client.  A row is given as a jsonb object
 * whose keys are column names (upsert_json.c converts the values), and is
 * written by an INSERT ... ON CONFLICT statement prepared once per table
 * and column set (upsert_cache.c); upsert_many sends every row that gives
 * the same columns in one statement, as arrays.  The functions are SECURITY
 * INVOKER: the statements run with the caller's privileges, column
 * privileges and row-level security policies.
 *
 * Whether a row was inserted or updated is counted by duet._upsert_updated(),
 * which the statement calls in its ON CONFLICT DO UPDATE ... WHERE clause:
 * PostgreSQL evaluates that clause only for a row that conflicted, after
 * locking it and just before updating it, and returns each row as it goes,
 * so the count tells updated rows from inserted ones.  (The xmax system
 * column would tell too, but partitioned tables cannot return it.)
 *
 * pg_ext/upsert.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "tcop/dest.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

#include "upsert_int.h"

PG_FUNCTION_INFO_V1(duet_upsert);
PG_FUNCTION_INFO_V1(duet_upsert_many);
PG_FUNCTION_INFO_V1(duet_upsert_updated);

/*
 * Rows updated by the upsert statement running now: duet._upsert_updated()
 * counts them when called with this statement's token.  A nested upsert
 * (from a trigger) saves and restores both around its own statement.
 */
static int64 duet_mark_token = 0;
static int64 duet_mark_count = 0;
static int64 duet_mark_next = 0;

/*
 * The conflict target: the given columns, which must be exactly the columns
 * of a unique key, or the primary key.
 */
static void
duet_conflict_target(DuetRel *rel, ArrayType *arr, DuetColSet *conf)
{
	int			k,
				i;

	if (arr == NULL)
	{
		if (rel->nkeys == 0 || !rel->keys[0].primary)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
					 errmsg("relation \"%s\" has no primary key", rel->relname),
					 rel->nkeys > 0 ?
					 errhint("Give conflict_columns; unique keys are: %s.",
							 duet_key_list(rel)) :
					 errhint("Give conflict_columns naming the columns of a unique key.")));
		conf->n = 0;
		for (i = 0; i < rel->keys[0].ncols; i++)
			duet_colset_add(conf, rel->keys[0].cols[i]);
		return;
	}

	duet_colset_from_array(rel, arr, conf, "conflict_columns");
	for (k = 0; k < rel->nkeys; k++)
	{
		DuetKey    *key = &rel->keys[k];

		if (key->ncols != conf->n)
			continue;
		for (i = 0; i < key->ncols; i++)
			if (!duet_colset_contains(conf, key->cols[i]))
				break;
		if (i == key->ncols)
			return;
	}
	duet_no_key_error(rel, conf, "conflict");
}

/* ----------------------------------------------------------------
 * Statements
 * ----------------------------------------------------------------
 */

/* What an upsert statement does. */
typedef struct DuetUpsertSpec
{
	DuetRel    *rel;
	DuetPlanKind kind;
	DuetColSet *cols;			/* columns given */
	DuetColSet *conf;			/* conflict target */
	DuetColSet *upd;			/* columns updated on conflict; empty: none */
	bool		only_if_changed;
	bool		return_rows;	/* false: RETURNING leaves the row out */
} DuetUpsertSpec;

/* Whether the statement may return fewer rows than it was given. */
static bool
duet_may_skip(DuetUpsertSpec *spec)
{
	return spec->only_if_changed || spec->upd->n == 0;
}

/* The comparison of a column between the table and EXCLUDED. */
static void
duet_append_distinct(StringInfo buf, DuetRel *rel, DuetColSet *set)
{
	int			i;

	for (i = 0; i < set->n; i++)
	{
		DuetColumn *col = &rel->cols[set->att[i] - 1];
		const char *name = quote_identifier(col->name);

		if (i > 0)
			appendStringInfoString(buf, " OR ");
		/* types without equality (json, point...) compare as text */
		if (col->has_eq)
			appendStringInfo(buf, "t.%s IS DISTINCT FROM EXCLUDED.%s", name, name);
		else
			appendStringInfo(buf,
							 "t.%s::pg_catalog.text IS DISTINCT FROM EXCLUDED.%s::pg_catalog.text",
							 name, name);
	}
}

static void
duet_build_upsert_sql(StringInfo sql, void *arg)
{
	DuetUpsertSpec *spec = (DuetUpsertSpec *) arg;
	DuetRel    *rel = spec->rel;
	int			i;

	appendStringInfo(sql, "INSERT INTO %s AS t (", rel->qualname);
	duet_append_colset(sql, rel, spec->cols, "");
	if (spec->kind == PLAN_UPSERT_ONE)
	{
		appendStringInfoString(sql, ") VALUES (");
		for (i = 0; i < spec->cols->n; i++)
			appendStringInfo(sql, "%s$%d", i > 0 ? ", " : "", i + 1);
		appendStringInfoChar(sql, ')');
	}
	else
	{
		/*
		 * The rows come back in the order of the arrays: unnest() in the
		 * target list runs the arrays in step, row by row, and ModifyTable
		 * returns each row as it goes.  (In FROM, ROWS FROM would first
		 * store every row in a tuplestore, spilled to disk past work_mem.)
		 */
		appendStringInfoString(sql, ") SELECT ");
		for (i = 0; i < spec->cols->n; i++)
		{
			DuetColumn *col = &rel->cols[spec->cols->att[i] - 1];

			appendStringInfo(sql, "%spg_catalog.unnest($%d)", i > 0 ? ", " : "", i + 1);
			/* qualified: the plan is parsed again under the next search_path */
			if (col->as_text)
				appendStringInfo(sql, "::%s",
								 format_type_extended(col->typid, col->typmod,
													  FORMAT_TYPE_TYPEMOD_GIVEN |
													  FORMAT_TYPE_FORCE_QUALIFY));
		}
	}

	appendStringInfoString(sql, " ON CONFLICT (");
	duet_append_colset(sql, rel, spec->conf, "");
	if (spec->upd->n == 0)
		appendStringInfoString(sql, ") DO NOTHING");
	else
	{
		appendStringInfoString(sql, ") DO UPDATE SET ");
		for (i = 0; i < spec->upd->n; i++)
		{
			const char *name = quote_identifier(rel->cols[spec->upd->att[i] - 1].name);

			appendStringInfo(sql, "%s%s = EXCLUDED.%s", i > 0 ? ", " : "",
							 name, name);
		}
		/* the last parameter is the token of the execution */
		appendStringInfoString(sql, " WHERE duet._upsert_updated(");
		if (spec->only_if_changed)
			duet_append_distinct(sql, rel, spec->upd);
		else
			appendStringInfoString(sql, "true");
		appendStringInfo(sql, ", $%d)", spec->cols->n + 1);
	}
	appendStringInfo(sql, " RETURNING %s",
					 spec->return_rows ? "pg_catalog.to_jsonb(t.*)" : "NULL::pg_catalog.jsonb");
	/* the key identifies the returned rows when some are skipped */
	if (spec->kind == PLAN_UPSERT_MANY && duet_may_skip(spec))
	{
		appendStringInfoString(sql, ", ");
		duet_append_colset(sql, rel, spec->conf, "t.");
	}
}

static void
duet_build_fetch_sql(StringInfo sql, void *arg)
{
	DuetUpsertSpec *spec = (DuetUpsertSpec *) arg;
	int			i;

	appendStringInfo(sql, "SELECT pg_catalog.to_jsonb(t.*) FROM %s AS t WHERE ",
					 spec->rel->qualname);
	for (i = 0; i < spec->conf->n; i++)
		appendStringInfo(sql, "%st.%s = $%d", i > 0 ? " AND " : "",
						 quote_identifier(spec->rel->cols[spec->conf->att[i] - 1].name),
						 i + 1);
}

static SPIPlanPtr
duet_upsert_plan(DuetUpsertSpec *spec)
{
	StringInfoData sig;
	Oid			argtypes[MaxHeapAttributeNumber + 1];
	int			i;

	initStringInfo(&sig);
	appendStringInfoChar(&sig, spec->kind);
	appendStringInfoChar(&sig, spec->only_if_changed ? 'c' : 'a');
	appendStringInfoChar(&sig, spec->return_rows ? 'r' : 'n');
	appendStringInfoChar(&sig, '|');
	duet_append_signature(&sig, spec->cols);
	duet_append_signature(&sig, spec->conf);
	duet_append_signature(&sig, spec->upd);
	for (i = 0; i < spec->cols->n; i++)
	{
		DuetColumn *col = &spec->rel->cols[spec->cols->att[i] - 1];

		if (spec->kind == PLAN_UPSERT_ONE)
			argtypes[i] = col->typid;
		else
			argtypes[i] = col->as_text ? TEXTARRAYOID : col->arraytype;
	}
	argtypes[spec->cols->n] = INT8OID;
	return duet_get_plan(spec->rel, sig.data, spec->cols->n + 1, argtypes,
						 duet_build_upsert_sql, spec);
}

static SPIPlanPtr
duet_fetch_plan(DuetUpsertSpec *spec)
{
	StringInfoData sig;
	Oid			argtypes[INDEX_MAX_KEYS];
	int			i;

	initStringInfo(&sig);
	appendStringInfoChar(&sig, PLAN_FETCH_KEY);
	appendStringInfoChar(&sig, '|');
	duet_append_signature(&sig, spec->conf);
	for (i = 0; i < spec->conf->n; i++)
		argtypes[i] = spec->rel->cols[spec->conf->att[i] - 1].typid;
	return duet_get_plan(spec->rel, sig.data, spec->conf->n, argtypes,
						 duet_build_fetch_sql, spec);
}

/*
 * The columns updated on conflict: the given update_columns that the row
 * gives a value to, or by default every given column outside the conflict
 * target.  Columns a row does not give are never overwritten.
 */
static void
duet_update_set(DuetRel *rel, DuetColSet *cols, DuetColSet *conf,
				DuetColSet *explicit_upd, DuetColSet *upd)
{
	int			i;

	upd->n = 0;
	for (i = 0; i < cols->n; i++)
	{
		AttrNumber	att = cols->att[i];

		if (explicit_upd != NULL ? duet_colset_contains(explicit_upd, att) :
			!duet_colset_contains(conf, att))
			duet_colset_add(upd, att);
	}
}

/* Validate update_columns: known columns, none generated. */
static DuetColSet *
duet_explicit_update(DuetRel *rel, ArrayType *arr)
{
	DuetColSet *set;
	int			i;

	if (arr == NULL)
		return NULL;
	set = (DuetColSet *) palloc(sizeof(DuetColSet));
	duet_colset_from_array(rel, arr, set, "update_columns");
	for (i = 0; i < set->n; i++)
	{
		DuetColumn *col = &rel->cols[set->att[i] - 1];

		if (col->generated != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_GENERATED_ALWAYS),
					 errmsg("column \"%s\" is a generated column", col->name),
					 errdetail("Generated columns cannot be given a value.")));
	}
	return set;
}

/*
 * Fetch the current row by its conflict key, for a row that the statement
 * locked without returning it.  keyvals/keynulls are in conf order.  Returns
 * false when no row has the key (it was deleted after a DO NOTHING).
 */
static bool
duet_fetch_by_key(DuetUpsertSpec *spec, Datum *keyvals, bool *keynulls,
				  MemoryContext resultcxt, Datum *result)
{
	SPIPlanPtr	plan = duet_fetch_plan(spec);
	char		nulls[INDEX_MAX_KEYS];
	int			i;
	int			rc;
	bool		isnull;

	for (i = 0; i < spec->conf->n; i++)
	{
		if (keynulls[i])
			return false;		/* a null key never conflicts */
		nulls[i] = ' ';
	}
	rc = SPI_execute_plan(plan, keyvals, nulls, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;
	*result = duet_copy_jsonb(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull),
							  resultcxt);
	return true;
}

/*
 * duet._upsert_updated(changed, token) returns changed, and counts it when
 * true and token is the running upsert's.  Internal: upsert statements call
 * it in their ON CONFLICT DO UPDATE ... WHERE clause.
 */
Datum
duet_upsert_updated(PG_FUNCTION_ARGS)
{
	bool		changed = PG_GETARG_BOOL(0);

	if (changed && PG_GETARG_INT64(1) == duet_mark_token)
		duet_mark_count++;
	PG_RETURN_BOOL(changed);
}

/*
 * Execute an upsert plan with values for its columns and a fresh token as
 * its last parameter; *updated gets how many rows took the DO UPDATE path.
 * Rows go to dest, or to SPI_tuptable when dest is NULL.
 */
static int
duet_execute_upsert(SPIPlanPtr plan, int ncols, Datum *values, bool *nulls,
					DestReceiver *dest, int64 *updated)
{
	ParamListInfo params = makeParamList(ncols + 1);
	SPIExecuteOptions options;
	int64		saved_token = duet_mark_token;
	int64		saved_count = duet_mark_count;
	volatile int rc = 0;
	int			i;

	for (i = 0; i <= ncols; i++)
	{
		ParamExternData *prm = &params->params[i];

		prm->value = i < ncols ? values[i] : Int64GetDatum(++duet_mark_next);
		prm->isnull = i < ncols ? nulls[i] : false;
		prm->pflags = PARAM_FLAG_CONST;
		prm->ptype = SPI_getargtypeid(plan, i);
	}
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = false;
	options.dest = dest;

	duet_mark_token = DatumGetInt64(params->params[ncols].value);
	duet_mark_count = 0;
	PG_TRY();
	{
		rc = SPI_execute_plan_extended(plan, &options);
		*updated = duet_mark_count;
	}
	PG_FINALLY();
	{
		duet_mark_token = saved_token;
		duet_mark_count = saved_count;
	}
	PG_END_TRY();
	return rc;
}

/*
 * The values of the conflict key, in conf order, from a row's columns and
 * values (in cols order).  A column the row does not give is null.
 */
static void
duet_key_values(DuetColSet *conf, DuetColSet *cols, Datum *values,
				bool *nulls, Datum *keyvals, bool *keynulls)
{
	int			i,
				j;

	for (i = 0; i < conf->n; i++)
	{
		keyvals[i] = (Datum) 0;
		keynulls[i] = true;
		for (j = 0; j < cols->n; j++)
		{
			if (cols->att[j] == conf->att[i])
			{
				keyvals[i] = values[j];
				keynulls[i] = nulls[j];
				break;
			}
		}
	}
}

/*
 * Upsert one row whose values are already converted; SPI must be connected.
 * The result (a jsonb copied into resultcxt) is null only when a trigger
 * skipped the row.
 */
static void
duet_upsert_row(DuetUpsertSpec *spec, Datum *values, bool *nulls,
				MemoryContext resultcxt, Datum *result, bool *isnull,
				bool *inserted)
{
	DuetUpsertSpec one = *spec;
	Datum		keyvals[INDEX_MAX_KEYS];
	bool		keynulls[INDEX_MAX_KEYS];
	int			attempt;

	one.kind = PLAN_UPSERT_ONE;
	one.return_rows = true;
	duet_key_values(spec->conf, spec->cols, values, nulls, keyvals, keynulls);

	for (attempt = 1;; attempt++)
	{
		int			rc;
		bool		null;
		int			i;
		int64		updated;

		rc = duet_execute_upsert(duet_upsert_plan(&one), spec->cols->n, values,
								 nulls, NULL, &updated);
		if (rc != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "SPI_execute_plan_extended failed: %s", SPI_result_code_string(rc));
		if (SPI_processed > 0)
		{
			*result = duet_copy_jsonb(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 1, &null),
									  resultcxt);
			*inserted = updated == 0;
			*isnull = false;
			return;
		}

		/*
		 * Nothing returned: the conflicting row was left unchanged.  With
		 * only_if_changed it is locked and still there; after DO NOTHING it
		 * may have been deleted since, and then the insert is tried again.
		 */
		*inserted = false;
		if (duet_fetch_by_key(spec, keyvals, keynulls, resultcxt, result))
		{
			*isnull = false;
			return;
		}
		for (i = 0; i < spec->conf->n; i++)
		{
			if (keynulls[i])
			{
				/* no conflict was possible: a trigger skipped the row */
				*isnull = true;
				return;
			}
		}
		if (attempt >= DUET_MAX_ATTEMPTS)
			duet_invisible_conflict(spec->rel, attempt);
	}
}

/*
 * duet.upsert(tbl, row, conflict_columns, update_columns, only_if_changed)
 *		returns duet.upsert_result (row jsonb, inserted boolean)
 *
 * Inserts row, or updates the row it conflicts with on conflict_columns
 * (default: the primary key).  update_columns limits what is overwritten;
 * an empty array updates nothing and returns the existing row.  With
 * only_if_changed, a row whose values would not change is not written.
 */
Datum
duet_upsert(PG_FUNCTION_ARGS)
{
	MemoryContext callercxt = CurrentMemoryContext;
	TupleDesc	tupdesc;
	DuetRel    *rel;
	DuetRow    *row;
	DuetColSet	conf,
				upd;
	DuetColSet *explicit_upd;
	DuetUpsertSpec spec;
	Datum		result[2];
	bool		resnulls[2] = {false, false};
	bool		inserted;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	duet_enter();
	rel = duet_get_rel(PG_GETARG_OID(0));
	row = (DuetRow *) palloc(sizeof(DuetRow));
	duet_conflict_target(rel, PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2), &conf);
	explicit_upd = duet_explicit_update(rel, PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3));
	duet_read_row(rel, PG_GETARG_JSONB_P(1), "row", row);
	if (row->cols.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("row must give at least one column")));
	duet_update_set(rel, &row->cols, &conf, explicit_upd, &upd);

	spec.rel = rel;
	spec.kind = PLAN_UPSERT_ONE;
	spec.cols = &row->cols;
	spec.conf = &conf;
	spec.upd = &upd;
	spec.only_if_changed = !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	spec.return_rows = true;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	duet_upsert_row(&spec, row->values, row->nulls, callercxt,
					&result[0], &resnulls[0], &inserted);
	result[1] = BoolGetDatum(inserted);
	SPI_finish();
	duet_leave();

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  result, resnulls)));
}

/* ----------------------------------------------------------------
 * duet.upsert_many
 * ----------------------------------------------------------------
 */

/* The rows of a bulk upsert that give the same columns. */
typedef struct DuetGroup
{
	DuetColSet	cols;
	int			nrows;
	int			cap;
	int		   *elements;		/* 0-based index in the input array */
	Datum	  **values;			/* [column][row] */
	bool	  **nulls;
} DuetGroup;

static DuetGroup *
duet_find_group(List **groups, DuetGroup *last, DuetRow *row)
{
	ListCell   *lc;
	DuetGroup  *g;
	int			i;

#define SAME_COLS(g) ((g)->cols.n == row->cols.n && \
	memcmp((g)->cols.att, row->cols.att, sizeof(AttrNumber) * row->cols.n) == 0)

	if (last != NULL && SAME_COLS(last))
		return last;
	foreach(lc, *groups)
	{
		g = (DuetGroup *) lfirst(lc);
		if (SAME_COLS(g))
			return g;
	}
#undef SAME_COLS

	g = (DuetGroup *) palloc0(sizeof(DuetGroup));
	g->cols.n = row->cols.n;
	memcpy(g->cols.att, row->cols.att, sizeof(AttrNumber) * row->cols.n);
	g->cap = 64;
	g->elements = palloc(sizeof(int) * g->cap);
	g->values = palloc(sizeof(Datum *) * Max(row->cols.n, 1));
	g->nulls = palloc(sizeof(bool *) * Max(row->cols.n, 1));
	for (i = 0; i < row->cols.n; i++)
	{
		g->values[i] = palloc(sizeof(Datum) * g->cap);
		g->nulls[i] = palloc(sizeof(bool) * g->cap);
	}
	*groups = lappend(*groups, g);
	return g;
}

static void
duet_group_add(DuetGroup *g, DuetRow *row, int element)
{
	int			i;

	if (g->nrows == g->cap)
	{
		g->cap *= 2;
		g->elements = repalloc(g->elements, sizeof(int) * g->cap);
		for (i = 0; i < g->cols.n; i++)
		{
			g->values[i] = repalloc(g->values[i], sizeof(Datum) * g->cap);
			g->nulls[i] = repalloc(g->nulls[i], sizeof(bool) * g->cap);
		}
	}
	g->elements[g->nrows] = element;
	for (i = 0; i < g->cols.n; i++)
	{
		g->values[i][g->nrows] = row->values[i];
		g->nulls[i][g->nrows] = row->nulls[i];
	}
	g->nrows++;
}

/* One array parameter for a column of a group. */
static Datum
duet_group_array(DuetColumn *col, Datum *values, bool *nulls, int n)
{
	int			lb = 1;

	if (col->as_text)
	{
		Datum	   *texts = palloc(sizeof(Datum) * Max(n, 1));
		int			i;

		for (i = 0; i < n; i++)
			texts[i] = nulls[i] ? (Datum) 0 :
				CStringGetTextDatum(OutputFunctionCall(&col->output, values[i]));
		return PointerGetDatum(construct_md_array(texts, nulls, 1, &n, &lb,
												  TEXTOID, -1, false, TYPALIGN_INT));
	}
	return PointerGetDatum(construct_md_array(values, nulls, 1, &n, &lb,
											  col->typid, col->typlen,
											  col->typbyval, col->typalign));
}

/*
 * Rows returned by a bulk statement, received straight from the executor:
 * SPI's tuple table would copy every row once more.
 */
typedef struct DuetReceiver
{
	DestReceiver pub;
	MemoryContext cxt;			/* where the results are kept */
	DuetUpsertSpec *spec;
	int64		updated;		/* duet_mark_count after the last row */
	/* when rows come back in input order, they go straight to the result */
	Tuplestorestate *store;
	TupleDesc	storedesc;
	int		   *elements;		/* input index of each row */
	int			nkeys;			/* key columns after row and inserted */
	int			n;
	int			cap;
	Datum	   *rows;
	bool	   *inserted;
	Datum	   *keys;			/* [row * nkeys + i] */
	bool	   *keynulls;
} DuetReceiver;

static bool
duet_receive(TupleTableSlot *slot, DestReceiver *self)
{
	DuetReceiver *r = (DuetReceiver *) self;
	MemoryContext oldcxt = MemoryContextSwitchTo(r->cxt);
	int			i;

	slot_getallattrs(slot);
	if (r->store != NULL)
	{
		Datum		values[3];
		bool		nulls[3] = {false, slot->tts_isnull[0], false};

		if (r->n >= r->cap)
			elog(ERROR, "upsert returned more rows than it was given");
		values[0] = Int32GetDatum(r->elements[r->n] + 1);
		values[1] = slot->tts_values[0];
		values[2] = BoolGetDatum(duet_mark_count == r->updated);
		r->updated = duet_mark_count;
		tuplestore_putvalues(r->store, r->storedesc, values, nulls);
		r->n++;
		MemoryContextSwitchTo(oldcxt);
		return true;
	}
	if (r->n == r->cap)
	{
		r->cap *= 2;
		r->rows = repalloc_huge(r->rows, sizeof(Datum) * r->cap);
		r->inserted = repalloc_huge(r->inserted, sizeof(bool) * r->cap);
		if (r->nkeys > 0)
		{
			r->keys = repalloc_huge(r->keys, sizeof(Datum) * r->cap * r->nkeys);
			r->keynulls = repalloc_huge(r->keynulls, sizeof(bool) * r->cap * r->nkeys);
		}
	}
	r->rows[r->n] = slot->tts_isnull[0] ? (Datum) 0 :
		PointerGetDatum(PG_DETOAST_DATUM_COPY(slot->tts_values[0]));
	/* an updated row was counted just before it came back */
	r->inserted[r->n] = duet_mark_count == r->updated;
	r->updated = duet_mark_count;
	for (i = 0; i < r->nkeys; i++)
	{
		DuetColumn *col = &r->spec->rel->cols[r->spec->conf->att[i] - 1];
		int			k = r->n * r->nkeys + i;

		r->keynulls[k] = slot->tts_isnull[1 + i];
		r->keys[k] = r->keynulls[k] ? (Datum) 0 :
			datumCopy(slot->tts_values[1 + i], col->typbyval, col->typlen);
	}
	r->n++;
	MemoryContextSwitchTo(oldcxt);
	return true;
}

static void
duet_receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
duet_receiver_shutdown(DestReceiver *self)
{
}

static void
duet_receiver_destroy(DestReceiver *self)
{
}

/* Whether returned row j has the key that input row r of g gives. */
static bool
duet_same_key(DuetUpsertSpec *spec, DuetGroup *g, int r, DuetReceiver *rcv,
			  uint64 j)
{
	int			i,
				c;

	for (i = 0; i < spec->conf->n; i++)
	{
		DuetColumn *col = &spec->rel->cols[spec->conf->att[i] - 1];
		Datum		a = (Datum) 0;
		bool		anull = true;

		for (c = 0; c < g->cols.n; c++)
			if (g->cols.att[c] == col->attnum)
			{
				a = g->values[c][r];
				anull = g->nulls[c][r];
			}
		/* a row with a null key cannot have conflicted: it was inserted */
		if (anull)
			return true;
		if (rcv->keynulls[j * rcv->nkeys + i])
			return false;
		if (!col->eq_ready)
		{
			TypeCacheEntry *tc = lookup_type_cache(col->typid, TYPECACHE_EQ_OPR_FINFO);

			if (!OidIsValid(tc->eq_opr_finfo.fn_oid))
				elog(ERROR, "no equality function for type %u", col->typid);
			fmgr_info_copy(&col->eq, &tc->eq_opr_finfo, spec->rel->cxt);
			col->eq_ready = true;
		}
		if (!DatumGetBool(FunctionCall2Coll(&col->eq, col->collation, a,
											rcv->keys[j * rcv->nkeys + i])))
			return false;
	}
	return true;
}

/*
 * Run one group's statement and store each row's result under its input
 * index.  Rows come back in input order; when the statement may skip rows
 * (only_if_changed, or nothing to update), each returned row is matched to
 * its input row by the conflict key and the skipped ones are fetched.
 */
static void
duet_upsert_group(DuetUpsertSpec *spec, DuetGroup *g, MemoryContext resultcxt,
				  Datum *rows, bool *rownulls, bool *inserted,
				  ReturnSetInfo *direct)
{
	Datum	   *params = palloc(sizeof(Datum) * Max(g->cols.n, 1));
	bool	   *paramnulls = palloc0(sizeof(bool) * Max(g->cols.n, 1));
	DuetReceiver rcv;
	SPIPlanPtr	plan = duet_upsert_plan(spec);
	uint64		j = 0;
	int64		updated;
	int			i,
				r,
				rc;

	for (i = 0; i < g->cols.n; i++)
		params[i] = duet_group_array(&spec->rel->cols[g->cols.att[i] - 1],
									 g->values[i], g->nulls[i], g->nrows);

	memset(&rcv, 0, sizeof(rcv));
	rcv.pub.receiveSlot = duet_receive;
	rcv.pub.rStartup = duet_receiver_startup;
	rcv.pub.rShutdown = duet_receiver_shutdown;
	rcv.pub.rDestroy = duet_receiver_destroy;
	rcv.pub.mydest = DestNone;
	rcv.cxt = resultcxt;
	rcv.spec = spec;
	rcv.nkeys = duet_may_skip(spec) ? spec->conf->n : 0;
	rcv.cap = Max(g->nrows, 1);
	if (direct != NULL && !duet_may_skip(spec))
	{
		rcv.store = direct->setResult;
		rcv.storedesc = direct->setDesc;
		rcv.elements = g->elements;
	}
	else
	{
		rcv.rows = MemoryContextAllocHuge(resultcxt, sizeof(Datum) * rcv.cap);
		rcv.inserted = MemoryContextAllocHuge(resultcxt, sizeof(bool) * rcv.cap);
	}
	if (rcv.nkeys > 0)
	{
		rcv.keys = MemoryContextAllocHuge(resultcxt, sizeof(Datum) * rcv.cap * rcv.nkeys);
		rcv.keynulls = MemoryContextAllocHuge(resultcxt, sizeof(bool) * rcv.cap * rcv.nkeys);
	}

	rc = duet_execute_upsert(plan, g->cols.n, params, paramnulls,
							 (DestReceiver *) &rcv, &updated);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "SPI_execute_plan_extended failed: %s", SPI_result_code_string(rc));

	if (!duet_may_skip(spec) && rcv.n != g->nrows)
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("upsert into relation \"%s\" returned %d rows for %d given",
						spec->rel->relname, rcv.n, g->nrows),
				 errdetail("A trigger skipped rows, so results cannot be matched to input rows.")));
	if (rcv.store != NULL)
		return;

	for (r = 0; r < g->nrows; r++)
	{
		int			e = g->elements[r];

		if (j < rcv.n && (!duet_may_skip(spec) || duet_same_key(spec, g, r, &rcv, j)))
		{
			rows[e] = rcv.rows[j];
			inserted[e] = rcv.inserted[j];
			rownulls[e] = !spec->return_rows;
			j++;
		}
		else
		{
			Datum		vals[MaxHeapAttributeNumber];
			bool		nulls[MaxHeapAttributeNumber];
			Datum		keyvals[INDEX_MAX_KEYS];
			bool		keynulls[INDEX_MAX_KEYS];

			for (i = 0; i < g->cols.n; i++)
			{
				vals[i] = g->values[i][r];
				nulls[i] = g->nulls[i][r];
			}
			duet_key_values(spec->conf, &g->cols, vals, nulls, keyvals, keynulls);
			inserted[e] = false;
			rownulls[e] = false;
			/* deleted since a DO NOTHING: go through the one-row loop */
			if (!duet_fetch_by_key(spec, keyvals, keynulls, resultcxt, &rows[e]))
				duet_upsert_row(spec, vals, nulls, resultcxt, &rows[e],
								&rownulls[e], &inserted[e]);
			if (!spec->return_rows)
				rownulls[e] = true;
		}
	}
}

/*
 * duet.upsert_many(tbl, rows, conflict_columns, update_columns,
 *					only_if_changed, return_rows)
 *		returns table (ordinality integer, row jsonb, inserted boolean)
 *
 * With return_rows false, row is null: a bulk load that only needs to know
 * what was inserted skips turning every row into jsonb.
 * The bulk form of duet.upsert: rows is a JSON array of objects, and one
 * result comes back for each, in input order.  Rows giving the same columns
 * are upserted by one statement over arrays of converted values; rows are
 * all converted before anything is written.
 */
Datum
duet_upsert_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext callercxt = CurrentMemoryContext;
	DuetRel    *rel;
	DuetColSet	conf;
	DuetColSet *explicit_upd;
	Jsonb	   *jb;
	DuetRow    *row;
	List	  **groups;			/* set inside PG_TRY: kept out of registers */
	DuetConvert cv;
	ErrorContextCallback errcallback;
	Datum	   *rows;
	bool	   *rownulls;
	bool	   *inserted;
	bool		only_if_changed;
	bool		return_rows;
	bool		direct;
	int			n,
				i;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return (Datum) 0;

	duet_enter();
	rel = duet_get_rel(PG_GETARG_OID(0));
	duet_conflict_target(rel, PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2), &conf);
	explicit_upd = duet_explicit_update(rel, PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3));
	only_if_changed = !PG_ARGISNULL(4) && PG_GETARG_BOOL(4);
	return_rows = PG_ARGISNULL(5) || PG_GETARG_BOOL(5);

	jb = PG_GETARG_JSONB_P(1);
	if (!JB_ROOT_IS_ARRAY(jb) || JB_ROOT_IS_SCALAR(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("rows must be a JSON array"),
				 errdetail("Got a JSON %s.", duet_json_typename(jb))));
	n = JB_ROOT_COUNT(jb);
	rows = palloc(sizeof(Datum) * Max(n, 1));
	rownulls = palloc(sizeof(bool) * Max(n, 1));
	inserted = palloc(sizeof(bool) * Max(n, 1));
	row = (DuetRow *) palloc(sizeof(DuetRow));
	groups = (List **) palloc0(sizeof(List *));

	/* convert every row first: a bad value fails before anything is written */
	cv.rel = rel;
	cv.col = NULL;
	cv.element = 0;
	errcallback.callback = duet_element_context;
	errcallback.arg = &cv;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	PG_TRY();
	{
		JsonbIterator *it = JsonbIteratorInit(&jb->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		DuetGroup  *last = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			cv.element++;
			if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
				duet_not_object("row", duet_jbv_typename(&v));
			duet_read_object(&cv, v.val.binary.data, row);
			if (row->cols.n == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("row must give at least one column")));
			last = duet_find_group(groups, last, row);
			duet_group_add(last, row, cv.element - 1);
		}
	}
	PG_CATCH();
	{
		duet_convert_error(&cv, callercxt);
	}
	PG_END_TRY();
	error_context_stack = errcallback.previous;

	direct = false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	foreach(lc, *groups)
	{
		DuetGroup  *g = (DuetGroup *) lfirst(lc);
		DuetColSet	upd;
		DuetUpsertSpec spec;

		duet_update_set(rel, &g->cols, &conf, explicit_upd, &upd);
		spec.rel = rel;
		spec.kind = PLAN_UPSERT_MANY;
		spec.cols = &g->cols;
		spec.conf = &conf;
		spec.upd = &upd;
		spec.only_if_changed = only_if_changed;
		spec.return_rows = return_rows;

		/*
		 * One group returning every row gives them in input order: they go
		 * to the result as they come, without being kept here first.
		 */
		direct = list_length(*groups) == 1 && !duet_may_skip(&spec);
		duet_upsert_group(&spec, g, callercxt, rows, rownulls, inserted,
						  direct ? rsinfo : NULL);
	}
	SPI_finish();

	for (i = 0; i < n && !direct; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int32GetDatum(i + 1);
		values[1] = rows[i];
		nulls[1] = rownulls[i];
		values[2] = BoolGetDatum(inserted[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	duet_leave();
	return (Datum) 0;
}
