/*-------------------------------------------------------------------------
 *
 * upsert_cache.c
 *	  Cached table descriptions and prepared statements for duet.upsert,
 *	  duet.upsert_many and duet.get_or_create.
 *
 * The first call on a table describes it once: its columns with their type
 * input, output and equality functions, and the unique indexes that
 * ON CONFLICT can use as arbiters.  Statements are prepared once per table,
 * statement kind and column set, kept with SPI_keepplan in a cache of our
 * own, and dropped when a relcache invalidation for the table arrives
 * (ALTER TABLE, CREATE INDEX, ...), so that the next call rebuilds them from
 * the new definition.  A description replaced while a call may still be
 * using it is freed only once no call of ours is active.
 *
 * This file also holds the column-set and SQL-building helpers that the
 * statements of the other upsert files share.
 *
 * pg_ext/upsert_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "duet_ext.h"
#include "upsert_int.h"

/* A prepared statement for one table, kind and column set. */
typedef struct DuetPlan
{
	char	   *signature;		/* cache key within the table */
	SPIPlanPtr	plan;
} DuetPlan;

/*
 * The hash entry points to the description, so that a call still using a
 * stale description keeps it when a nested call replaces the entry's.
 */
typedef struct DuetRelEntry
{
	Oid			relid;			/* hash key */
	DuetRel    *rel;
} DuetRelEntry;

static HTAB *duet_rels = NULL;
static MemoryContext duet_upsert_cxt = NULL;

/*
 * Stale table descriptions cannot be freed while a call may still be using
 * them (an invalidation can arrive while one of their plans runs), so they
 * wait on this list until no call of ours is active.
 */
static List *duet_stale_rels = NIL;
static int	duet_call_depth = 0;

/* set by the invalidation callback: some hash entries are stale */
static bool duet_invalid_pending = false;

static void duet_relcache_callback(Datum arg, Oid relid);
static void duet_xact_callback(XactEvent event, void *arg);

/*
 * Module initialisation: register the invalidation callback that drops
 * cached plans when a table changes, and reset the call depth on abort.
 */
void
duet_upsert_init(void)
{
	CacheRegisterRelcacheCallback(duet_relcache_callback, (Datum) 0);
	RegisterXactCallback(duet_xact_callback, NULL);
}

/*
 * Relcache invalidation: mark the table's description stale.  Nothing is
 * freed here because the callback may run in the middle of our own
 * execution of one of the table's plans.
 */
static void
duet_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	DuetRelEntry *entry;

	if (duet_rels == NULL)
		return;

	if (OidIsValid(relid))
	{
		entry = hash_search(duet_rels, &relid, HASH_FIND, NULL);
		if (entry != NULL)
		{
			entry->rel->valid = false;
			duet_invalid_pending = true;
		}
		return;
	}

	hash_seq_init(&status, duet_rels);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		entry->rel->valid = false;
		duet_invalid_pending = true;
	}
}

/*
 * A call that failed never decremented the depth counter; at the end of the
 * transaction no call can be active any more.
 */
static void
duet_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
		duet_call_depth = 0;
}

/* Free the plans and memory of a table description no longer in the hash. */
static void
duet_free_rel(DuetRel *rel)
{
	ListCell   *lc;

	foreach(lc, rel->plans)
	{
		DuetPlan   *p = (DuetPlan *) lfirst(lc);

		SPI_freeplan(p->plan);
	}
	MemoryContextDelete(rel->cxt);
	pfree(rel);
}

/*
 * Called on entry of every SQL-callable function of upsert.c and
 * get_or_create.c.  When no call is active, stale descriptions are freed:
 * those replaced during a call, and those of tables changed or dropped
 * since, so that a session that upserts into many short-lived tables does
 * not accumulate plans.
 */
void
duet_enter(void)
{
	if (duet_call_depth == 0 && duet_invalid_pending)
	{
		HASH_SEQ_STATUS status;
		DuetRelEntry *entry;
		MemoryContext oldcxt = MemoryContextSwitchTo(duet_upsert_cxt);

		hash_seq_init(&status, duet_rels);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			if (entry->rel->valid)
				continue;
			duet_stale_rels = lappend(duet_stale_rels, entry->rel);
			/* removing the entry just returned is allowed during a scan */
			hash_search(duet_rels, &entry->relid, HASH_REMOVE, NULL);
		}
		MemoryContextSwitchTo(oldcxt);
		duet_invalid_pending = false;
	}
	if (duet_call_depth == 0 && duet_stale_rels != NIL)
	{
		ListCell   *lc;

		foreach(lc, duet_stale_rels)
			duet_free_rel((DuetRel *) lfirst(lc));
		list_free(duet_stale_rels);
		duet_stale_rels = NIL;
	}
	duet_call_depth++;
}

void
duet_leave(void)
{
	if (duet_call_depth > 0)
		duet_call_depth--;
}

/* ----------------------------------------------------------------
 * Table descriptions
 * ----------------------------------------------------------------
 */

/* Read the unique indexes that ON CONFLICT can use as arbiters. */
static void
duet_load_keys(DuetRel *rel, Relation r)
{
	List	   *indexes = RelationGetIndexList(r);
	Oid			pk = RelationGetPrimaryKeyIndex(r);
	ListCell   *lc;
	int			n = 0;

	rel->keys = (DuetKey *) MemoryContextAllocZero(rel->cxt,
												   sizeof(DuetKey) * (list_length(indexes) + 1));
	/* primary key first: it is the default conflict target */
	if (OidIsValid(pk))
		indexes = lcons_oid(pk, list_delete_oid(indexes, pk));

	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);
		HeapTuple	tup;
		Form_pg_index idx;
		int			i;

		tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
		if (!HeapTupleIsValid(tup))
			continue;
		idx = (Form_pg_index) GETSTRUCT(tup);

		/*
		 * ON CONFLICT infers only immediate, valid unique indexes without
		 * expressions or predicates.
		 */
		if (idx->indisunique && idx->indisvalid && idx->indimmediate &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL))
		{
			DuetKey    *key = &rel->keys[n++];

			key->indexoid = indexoid;
			key->primary = idx->indisprimary;
			key->ncols = idx->indnkeyatts;
			for (i = 0; i < idx->indnkeyatts; i++)
				key->cols[i] = idx->indkey.values[i];
		}
		ReleaseSysCache(tup);
	}
	rel->nkeys = n;
	list_free(indexes);
}

/* Build the description of a table: its columns, keys and conversions. */
static DuetRel *
duet_build_rel(Oid relid)
{
	Relation	r;
	TupleDesc	desc;
	DuetRel    *rel;
	MemoryContext oldcxt;
	int			i;

	r = relation_open(relid, AccessShareLock);
	if (r->rd_rel->relkind != RELKIND_RELATION &&
		r->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(r)),
				 errdetail("Only tables and partitioned tables can be upserted into.")));

	rel = (DuetRel *) MemoryContextAllocZero(duet_upsert_cxt, sizeof(DuetRel));
	rel->relid = relid;
	rel->cxt = AllocSetContextCreate(duet_upsert_cxt, "duet upsert table",
									 ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(rel->cxt);

	rel->relname = pstrdup(RelationGetRelationName(r));
	rel->qualname = pstrdup(quote_qualified_identifier(get_namespace_name(RelationGetNamespace(r)),
													   RelationGetRelationName(r)));
	desc = RelationGetDescr(r);
	rel->natts = desc->natts;
	rel->cols = (DuetColumn *) palloc0(sizeof(DuetColumn) * Max(desc->natts, 1));
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		DuetColumn *col = &rel->cols[i];
		Oid			func;
		bool		isvarlena;

		col->attnum = att->attnum;
		col->dropped = att->attisdropped;
		if (col->dropped)
			continue;
		col->name = pstrdup(NameStr(att->attname));
		col->namelen = strlen(col->name);
		col->generated = att->attgenerated;
		col->typid = att->atttypid;
		col->typmod = att->atttypmod;
		col->collation = att->attcollation;
		col->basetype = getBaseType(att->atttypid);
		col->has_eq = OidIsValid(lookup_type_cache(att->atttypid,
												   TYPECACHE_EQ_OPR)->eq_opr);
		getTypeInputInfo(att->atttypid, &func, &col->ioparam);
		fmgr_info_cxt(func, &col->input, rel->cxt);
		getTypeOutputInfo(att->atttypid, &func, &isvarlena);
		fmgr_info_cxt(func, &col->output, rel->cxt);
		get_typlenbyvalalign(att->atttypid, &col->typlen, &col->typbyval,
							 &col->typalign);

		/*
		 * unnest() of an array of arrays would flatten it, and unnest() of
		 * an array of a composite type in FROM would expand into its
		 * attributes, so array and composite columns (and types without an
		 * array type) travel as text[] and are cast back in SQL.
		 */
		col->arraytype = get_array_type(att->atttypid);
		col->as_text = OidIsValid(get_element_type(col->basetype)) ||
			type_is_rowtype(col->basetype) ||
			!OidIsValid(col->arraytype);
	}
	duet_load_keys(rel, r);
	MemoryContextSwitchTo(oldcxt);

	relation_close(r, NoLock);
	rel->valid = true;
	return rel;
}

/*
 * The cached description of a table, built or rebuilt as needed.  The table
 * is locked first so that pending invalidations are processed before the
 * cache is trusted.
 */
DuetRel *
duet_get_rel(Oid relid)
{
	DuetRelEntry *entry;
	bool		found;

	if (duet_rels == NULL)
	{
		HASHCTL		ctl;

		duet_upsert_cxt = AllocSetContextCreate(CacheMemoryContext,
												"duet upsert cache",
												ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(DuetRelEntry);
		ctl.hcxt = duet_upsert_cxt;
		duet_rels = hash_create("duet upsert tables", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	LockRelationOid(relid, AccessShareLock);

	entry = hash_search(duet_rels, &relid, HASH_FIND, &found);
	if (found && entry->rel->valid)
		return entry->rel;
	if (found)
	{
		/* keep the stale description alive until no call uses it */
		MemoryContext oldcxt = MemoryContextSwitchTo(duet_upsert_cxt);

		duet_stale_rels = lappend(duet_stale_rels, entry->rel);
		MemoryContextSwitchTo(oldcxt);
		hash_search(duet_rels, &relid, HASH_REMOVE, NULL);
	}

	/* built before the entry exists, so that an error leaves no entry */
	{
		DuetRel    *rel = duet_build_rel(relid);

		entry = hash_search(duet_rels, &relid, HASH_ENTER, &found);
		entry->rel = rel;
		return rel;
	}
}

/* The column called name, or an error naming the table's columns. */
static DuetColumn *
duet_find_column(DuetRel *rel, const char *name, int len)
{
	int			i;

	for (i = 0; i < rel->natts; i++)
	{
		DuetColumn *col = &rel->cols[i];

		if (!col->dropped && col->namelen == len &&
			memcmp(col->name, name, len) == 0)
			return col;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column \"%s\" of relation \"%s\" does not exist",
					pnstrdup(name, len), rel->relname),
			 errhint("Columns are: %s.", duet_column_list(rel))));
	return NULL;				/* keep compiler quiet */
}

/* A column that a row gives a value to; generated columns are refused. */
DuetColumn *
duet_value_column(DuetRel *rel, const char *name, int len)
{
	DuetColumn *col = duet_find_column(rel, name, len);

	if (col->generated != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_GENERATED_ALWAYS),
				 errmsg("column \"%s\" is a generated column", col->name),
				 errdetail("Generated columns cannot be given a value.")));
	return col;
}

/* ----------------------------------------------------------------
 * Column sets
 * ----------------------------------------------------------------
 */

bool
duet_colset_contains(DuetColSet *set, AttrNumber att)
{
	int			i;

	for (i = 0; i < set->n; i++)
		if (set->att[i] == att)
			return true;
	return false;
}

void
duet_colset_add(DuetColSet *set, AttrNumber att)
{
	int			i;

	if (duet_colset_contains(set, att))
		return;
	/* insertion keeps the set sorted, so equal sets compare equal */
	for (i = set->n; i > 0 && set->att[i - 1] > att; i--)
		set->att[i] = set->att[i - 1];
	set->att[i] = att;
	set->n++;
}

/* Resolve a text[] of column names; NULL elements are refused. */
void
duet_colset_from_array(DuetRel *rel, ArrayType *arr, DuetColSet *set,
					   const char *argname)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;

	set->n = 0;
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *name;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain nulls", argname)));
		name = TextDatumGetCString(elems[i]);
		duet_colset_add(set, duet_find_column(rel, name, strlen(name))->attnum);
	}
}

/* ----------------------------------------------------------------
 * Statements
 * ----------------------------------------------------------------
 */

void
duet_append_colset(StringInfo buf, DuetRel *rel, DuetColSet *set,
				   const char *prefix)
{
	int			i;

	for (i = 0; i < set->n; i++)
	{
		if (i > 0)
			appendStringInfoString(buf, ", ");
		appendStringInfo(buf, "%s%s", prefix,
						 quote_identifier(rel->cols[set->att[i] - 1].name));
	}
}

/* A column set in a plan's signature: "2,3,|".  No printf: it runs per call. */
void
duet_append_signature(StringInfo buf, DuetColSet *set)
{
	char		num[12];
	int			i;

	for (i = 0; i < set->n; i++)
	{
		appendBinaryStringInfo(buf, num, pg_ltoa(set->att[i], num));
		appendStringInfoChar(buf, ',');
	}
	appendStringInfoChar(buf, '|');
}

SPIPlanPtr
duet_get_plan(DuetRel *rel, const char *signature, int nargs, Oid *argtypes,
			  DuetSqlBuilder build, void *arg)
{
	ListCell   *lc;
	StringInfoData sql;
	SPIPlanPtr	plan;
	DuetPlan   *p;
	MemoryContext oldcxt;

	foreach(lc, rel->plans)
	{
		p = (DuetPlan *) lfirst(lc);
		if (strcmp(p->signature, signature) == 0)
			return p->plan;
	}

	initStringInfo(&sql);
	build(&sql, arg);
	plan = SPI_prepare(sql.data, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql.data,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);

	oldcxt = MemoryContextSwitchTo(rel->cxt);
	p = (DuetPlan *) palloc(sizeof(DuetPlan));
	p->signature = pstrdup(signature);
	p->plan = plan;
	rel->plans = lappend(rel->plans, p);
	MemoryContextSwitchTo(oldcxt);
	pfree(sql.data);
	return plan;
}

/* SPI wants null flags as ' ' and 'n'. */
char *
duet_spi_nulls(bool *nulls, int n)
{
	char	   *res = palloc(n + 1);
	int			i;

	for (i = 0; i < n; i++)
		res[i] = nulls[i] ? 'n' : ' ';
	res[n] = '\0';
	return res;
}

/* Copy a jsonb result out of SPI's memory into cxt. */
Datum
duet_copy_jsonb(Datum d, MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

	d = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
	MemoryContextSwitchTo(oldcxt);
	return d;
}
