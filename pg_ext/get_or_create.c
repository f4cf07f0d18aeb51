/*-------------------------------------------------------------------------
 *
 * get_or_create.c
 *	  duet.get_or_create.
 *
 * Every ORM reimplements "get this row or create it"; this function does it
 * once, inside the server, for any client.  The lookup is a jsonb object
 * that must give every column of a unique key, which the insert uses as its
 * ON CONFLICT arbiter, so that sessions racing on one key both end with the
 * same row and exactly one of them creates it.  Values are converted by
 * upsert_json.c and the statements are cached by upsert_cache.c, like those
 * of duet.upsert; the function is SECURITY INVOKER.
 *
 * pg_ext/get_or_create.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "upsert_int.h"

PG_FUNCTION_INFO_V1(duet_get_or_create);

/* What get_or_create's statements do. */
typedef struct DuetGocSpec
{
	DuetRel    *rel;
	DuetKey    *key;			/* the unique key within the lookup */
	DuetColSet *lookup;			/* lookup columns; $1.. in this order */
	DuetColSet *cols;			/* inserted columns: lookup and defaults */
} DuetGocSpec;

static int
duet_colset_index(DuetColSet *set, AttrNumber att)
{
	int			i;

	for (i = 0; i < set->n; i++)
		if (set->att[i] == att)
			return i;
	return -1;
}

static bool
duet_key_has(DuetKey *key, AttrNumber att)
{
	int			i;

	for (i = 0; i < key->ncols; i++)
		if (key->cols[i] == att)
			return true;
	return false;
}

/*
 * SELECT the row with the lookup's unique key, and whether its other lookup
 * columns match too.
 */
static void
duet_build_goc_select(StringInfo sql, void *arg)
{
	DuetGocSpec *spec = (DuetGocSpec *) arg;
	DuetRel    *rel = spec->rel;
	bool		any = false;
	int			i;

	appendStringInfoString(sql, "SELECT pg_catalog.to_jsonb(t.*), ");
	for (i = 0; i < spec->lookup->n; i++)
	{
		DuetColumn *col = &rel->cols[spec->lookup->att[i] - 1];
		const char *name = quote_identifier(col->name);

		if (duet_key_has(spec->key, col->attnum))
			continue;
		if (any)
			appendStringInfoString(sql, " AND ");
		any = true;
		if (col->has_eq)
			appendStringInfo(sql, "t.%s IS NOT DISTINCT FROM $%d", name, i + 1);
		else
			appendStringInfo(sql,
							 "t.%s::pg_catalog.text IS NOT DISTINCT FROM $%d::pg_catalog.text",
							 name, i + 1);
	}
	if (!any)
		appendStringInfoString(sql, "true");
	appendStringInfo(sql, " FROM %s AS t WHERE ", rel->qualname);
	for (i = 0; i < spec->key->ncols; i++)
		appendStringInfo(sql, "%st.%s = $%d", i > 0 ? " AND " : "",
						 quote_identifier(rel->cols[spec->key->cols[i] - 1].name),
						 duet_colset_index(spec->lookup, spec->key->cols[i]) + 1);
}

static void
duet_build_goc_insert(StringInfo sql, void *arg)
{
	DuetGocSpec *spec = (DuetGocSpec *) arg;
	int			i;

	appendStringInfo(sql, "INSERT INTO %s AS t (", spec->rel->qualname);
	duet_append_colset(sql, spec->rel, spec->cols, "");
	appendStringInfoString(sql, ") VALUES (");
	for (i = 0; i < spec->cols->n; i++)
		appendStringInfo(sql, "%s$%d", i > 0 ? ", " : "", i + 1);
	appendStringInfoString(sql, ") ON CONFLICT (");
	for (i = 0; i < spec->key->ncols; i++)
		appendStringInfo(sql, "%s%s", i > 0 ? ", " : "",
						 quote_identifier(spec->rel->cols[spec->key->cols[i] - 1].name));
	appendStringInfoString(sql, ") DO NOTHING RETURNING pg_catalog.to_jsonb(t.*)");
}

static SPIPlanPtr
duet_goc_plan(DuetGocSpec *spec, DuetPlanKind kind)
{
	StringInfoData sig;
	Oid			argtypes[MaxHeapAttributeNumber];
	DuetColSet *params = kind == PLAN_GOC_SELECT ? spec->lookup : spec->cols;
	int			i;

	initStringInfo(&sig);
	appendStringInfo(&sig, "%c|%u|", kind, spec->key->indexoid);
	duet_append_signature(&sig, params);
	for (i = 0; i < params->n; i++)
		argtypes[i] = spec->rel->cols[params->att[i] - 1].typid;
	return duet_get_plan(spec->rel, sig.data, params->n, argtypes,
						 kind == PLAN_GOC_SELECT ? duet_build_goc_select :
						 duet_build_goc_insert, spec);
}

/*
 * The unique key that the lookup determines: one whose columns the lookup
 * all gives, the primary key first, then the narrowest.
 */
static DuetKey *
duet_lookup_key(DuetRel *rel, DuetColSet *lookup)
{
	DuetKey    *best = NULL;
	int			k,
				i;

	for (k = 0; k < rel->nkeys; k++)
	{
		DuetKey    *key = &rel->keys[k];

		for (i = 0; i < key->ncols; i++)
			if (!duet_colset_contains(lookup, key->cols[i]))
				break;
		if (i < key->ncols)
			continue;
		if (best == NULL || (!best->primary && key->ncols < best->ncols))
			best = key;
	}
	if (best == NULL)
		duet_no_key_error(rel, lookup, "lookup");
	return best;
}

/*
 * duet.get_or_create(tbl, lookup, defaults)
 *		returns duet.get_or_create_result (row jsonb, created boolean)
 *
 * Returns the row matching lookup, or inserts lookup plus defaults.  The
 * lookup must give every column of a unique key: the insert uses it as the
 * ON CONFLICT arbiter, so that sessions racing on one key both end with the
 * same row and exactly one creates it.  The SELECT, INSERT ... DO NOTHING,
 * SELECT loop never returns nothing under READ COMMITTED, since each SPI
 * statement takes a new snapshot that sees the row a conflict waited for.
 */
Datum
duet_get_or_create(PG_FUNCTION_ARGS)
{
	MemoryContext callercxt = CurrentMemoryContext;
	TupleDesc	tupdesc;
	DuetRel    *rel;
	DuetRow    *lookup;
	DuetRow    *defaults;
	DuetColSet	cols;
	Datum		values[MaxHeapAttributeNumber];
	bool		nulls[MaxHeapAttributeNumber];
	char	   *lookupnulls;
	char	   *insnulls;
	DuetGocSpec spec;
	Datum		result[2];
	bool		resnulls[2] = {false, false};
	int			attempt,
				i;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	duet_enter();
	rel = duet_get_rel(PG_GETARG_OID(0));
	lookup = (DuetRow *) palloc(sizeof(DuetRow));
	defaults = (DuetRow *) palloc(sizeof(DuetRow));
	duet_read_row(rel, PG_GETARG_JSONB_P(1), "lookup", lookup);
	defaults->cols.n = 0;
	if (!PG_ARGISNULL(2))
		duet_read_row(rel, PG_GETARG_JSONB_P(2), "defaults", defaults);
	if (lookup->cols.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lookup must give at least one column")));

	/* the inserted row: lookup and defaults, which must not overlap */
	cols = lookup->cols;
	for (i = 0; i < defaults->cols.n; i++)
	{
		if (duet_colset_contains(&cols, defaults->cols.att[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" appears in both lookup and defaults",
							rel->cols[defaults->cols.att[i] - 1].name)));
		duet_colset_add(&cols, defaults->cols.att[i]);
	}
	for (i = 0; i < cols.n; i++)
	{
		int			li = duet_colset_index(&lookup->cols, cols.att[i]);
		int			di = duet_colset_index(&defaults->cols, cols.att[i]);

		values[i] = li >= 0 ? lookup->values[li] : defaults->values[di];
		nulls[i] = li >= 0 ? lookup->nulls[li] : defaults->nulls[di];
	}

	spec.rel = rel;
	spec.key = duet_lookup_key(rel, &lookup->cols);
	spec.lookup = &lookup->cols;
	spec.cols = &cols;
	for (i = 0; i < spec.key->ncols; i++)
	{
		int			li = duet_colset_index(&lookup->cols, spec.key->cols[i]);

		if (lookup->nulls[li])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("lookup value for key column \"%s\" must not be null",
							rel->cols[spec.key->cols[i] - 1].name),
					 errdetail("A null never conflicts, so the row could be created twice.")));
	}
	lookupnulls = duet_spi_nulls(lookup->nulls, lookup->cols.n);
	insnulls = duet_spi_nulls(nulls, cols.n);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	for (attempt = 1;; attempt++)
	{
		int			rc;
		bool		null;

		rc = SPI_execute_plan(duet_goc_plan(&spec, PLAN_GOC_SELECT),
							  lookup->values, lookupnulls, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
		if (SPI_processed > 0)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];

			if (!DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &null)))
				ereport(ERROR,
						(errcode(ERRCODE_UNIQUE_VIOLATION),
						 errmsg("duplicate key value violates unique constraint \"%s\"",
								get_rel_name(spec.key->indexoid)),
						 errdetail("A row with the same key exists but does not match the lookup.")));
			result[0] = duet_copy_jsonb(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &null),
										callercxt);
			result[1] = BoolGetDatum(false);
			break;
		}

		rc = SPI_execute_plan(duet_goc_plan(&spec, PLAN_GOC_INSERT),
							  values, insnulls, false, 0);
		if (rc != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(rc));
		if (SPI_processed > 0)
		{
			result[0] = duet_copy_jsonb(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &null),
										callercxt);
			result[1] = BoolGetDatum(true);
			break;
		}

		/*
		 * The insert met a row committed after our SELECT's snapshot.  Under
		 * READ COMMITTED the next SELECT sees it; with a transaction
		 * snapshot it never would (ON CONFLICT normally reports that itself).
		 */
		if (IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent insert")));
		if (attempt >= DUET_MAX_ATTEMPTS)
			duet_invisible_conflict(rel, attempt);
	}
	SPI_finish();
	duet_leave();

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  result, resnulls)));
}
