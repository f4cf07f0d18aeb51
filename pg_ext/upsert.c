/*-------------------------------------------------------------------------
 *
 * upsert.c
 *	  duet.upsert, duet.upsert_many and duet.get_or_create.
 *
 * Every ORM reimplements "insert or update this row" and "get this row or
 * create it"; these functions do it once, inside the server, for any client.
 * A row is given as a jsonb object whose keys are column names.  Values are
 * converted in C with each column's input function, so that a bad value is
 * reported with the column's name, and are then bound as parameters of an
 * INSERT ... ON CONFLICT statement: they are never spliced into SQL text,
 * and identifiers are always quoted.  The functions are SECURITY INVOKER:
 * the statements run with the caller's privileges, column privileges and
 * row-level security policies.
 *
 * Statements are prepared once per table, statement kind and column set,
 * kept with SPI_keepplan in a cache of our own, and dropped when a relcache
 * invalidation for the table arrives (ALTER TABLE, CREATE INDEX, ...), so
 * that the next call rebuilds them from the new definition.
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
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "tcop/dest.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "duet_ext.h"

PG_FUNCTION_INFO_V1(duet_upsert);
PG_FUNCTION_INFO_V1(duet_upsert_many);
PG_FUNCTION_INFO_V1(duet_get_or_create);
PG_FUNCTION_INFO_V1(duet_upsert_updated);

/*
 * How often a conflict that left no visible row is retried: a concurrent
 * delete resolves in one retry, a row hidden by row-level security never.
 */
#define DUET_MAX_ATTEMPTS	10

/* What a cached plan does; part of its cache key. */
typedef enum DuetPlanKind
{
	PLAN_UPSERT_ONE = 'o',		/* INSERT ... VALUES ($1, ...) ON CONFLICT */
	PLAN_UPSERT_MANY = 'm',		/* INSERT ... SELECT FROM unnest($1, ...) */
	PLAN_FETCH_KEY = 'f',		/* SELECT the row by its conflict key */
	PLAN_GOC_SELECT = 's',		/* get_or_create: SELECT by unique key */
	PLAN_GOC_INSERT = 'i'		/* get_or_create: INSERT ... DO NOTHING */
} DuetPlanKind;

/* One column of a cached table description. */
typedef struct DuetColumn
{
	char	   *name;
	AttrNumber	attnum;
	bool		dropped;
	char		generated;		/* attgenerated */
	Oid			typid;
	int32		typmod;
	Oid			collation;
	bool		is_json;		/* json or jsonb, or a domain over them */
	bool		is_array;		/* an array type or a domain over one */
	bool		has_eq;			/* the type has a default equality operator */
	FmgrInfo	input;			/* type input function */
	Oid			ioparam;
	/* upsert_many passes a column as an array of its type ... */
	Oid			arraytype;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	/* ... or, when there is no usable array type, as text[] and a cast */
	bool		as_text;
	FmgrInfo	output;
	/* comparing conflict keys when aligning returned rows */
	bool		eq_ready;
	FmgrInfo	eq;
} DuetColumn;

/* A unique index usable as an ON CONFLICT arbiter. */
typedef struct DuetKey
{
	Oid			indexoid;
	bool		primary;
	int			ncols;
	AttrNumber	cols[INDEX_MAX_KEYS];
} DuetKey;

/* A prepared statement for one table, kind and column set. */
typedef struct DuetPlan
{
	char	   *signature;		/* cache key within the table */
	SPIPlanPtr	plan;
} DuetPlan;

/* The cached description of one table. */
typedef struct DuetRel
{
	Oid			relid;
	bool		valid;			/* false once an invalidation arrived */
	MemoryContext cxt;			/* everything below lives here */
	char	   *relname;		/* for messages */
	char	   *qualname;		/* quoted schema.table for SQL */
	int			natts;
	DuetColumn *cols;			/* indexed by attnum - 1 */
	int			nkeys;
	DuetKey    *keys;			/* primary key first */
	List	   *plans;			/* DuetPlan * */
} DuetRel;

/*
 * The hash entry points to the description, so that a call still using a
 * stale description keeps it when a nested call replaces the entry's.
 */
typedef struct DuetRelEntry
{
	Oid			relid;			/* hash key */
	DuetRel    *rel;
} DuetRelEntry;

/* A column set: attribute numbers in ascending order. */
typedef struct DuetColSet
{
	int			n;
	AttrNumber	att[MaxHeapAttributeNumber];
} DuetColSet;

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

/*
 * Rows updated by the upsert statement running now: duet._upsert_updated()
 * counts them when called with this statement's token.  A nested upsert
 * (from a trigger) saves and restores both around its own statement.
 */
static int64 duet_mark_token = 0;
static int64 duet_mark_count = 0;
static int64 duet_mark_next = 0;

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
 * Called on entry of every SQL-callable function of this file.  When no
 * call is active, stale descriptions are freed: those replaced during a
 * call, and those of tables changed or dropped since, so that a session
 * that upserts into many short-lived tables does not accumulate plans.
 */
static void
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

static void
duet_leave(void)
{
	if (duet_call_depth > 0)
		duet_call_depth--;
}

/* The JSON type name of a jsonb value, as jsonb_typeof spells it. */
static const char *
duet_json_typename(Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_OBJECT(jb))
		return "object";
	if (JB_ROOT_IS_ARRAY(jb) && !JB_ROOT_IS_SCALAR(jb))
		return "array";
	if (!JsonbExtractScalar(&jb->root, &v))
		return "unknown";
	switch (v.type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		default:
			return "unknown";
	}
}

static const char *
duet_jbv_typename(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvBinary:
			return JsonContainerIsObject(v->val.binary.data) ? "object" : "array";
		default:
			return "unknown";
	}
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
		Oid			base;
		Oid			func;
		bool		isvarlena;

		col->attnum = att->attnum;
		col->dropped = att->attisdropped;
		if (col->dropped)
			continue;
		col->name = pstrdup(NameStr(att->attname));
		col->generated = att->attgenerated;
		col->typid = att->atttypid;
		col->typmod = att->atttypmod;
		col->collation = att->attcollation;
		base = getBaseType(att->atttypid);
		col->is_json = (base == JSONOID || base == JSONBOID);
		col->is_array = OidIsValid(get_element_type(base));
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
		col->as_text = col->is_array || type_is_rowtype(base) ||
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
static DuetRel *
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

/* "a, b, c": the table's columns, for hints. */
static char *
duet_column_list(DuetRel *rel)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < rel->natts; i++)
	{
		if (rel->cols[i].dropped)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, rel->cols[i].name);
	}
	return buf.data;
}

/* The column called name, or an error naming the table's columns. */
static DuetColumn *
duet_find_column(DuetRel *rel, const char *name, int len)
{
	int			i;

	for (i = 0; i < rel->natts; i++)
	{
		DuetColumn *col = &rel->cols[i];

		if (!col->dropped && strlen(col->name) == len &&
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
static DuetColumn *
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

/* "(id), (email)": the table's unique keys, for messages. */
static char *
duet_key_list(DuetRel *rel)
{
	StringInfoData buf;
	int			k,
				i;

	initStringInfo(&buf);
	for (k = 0; k < rel->nkeys; k++)
	{
		if (k > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoChar(&buf, '(');
		for (i = 0; i < rel->keys[k].ncols; i++)
		{
			if (i > 0)
				appendStringInfoString(&buf, ", ");
			appendStringInfoString(&buf, rel->cols[rel->keys[k].cols[i] - 1].name);
		}
		appendStringInfoChar(&buf, ')');
	}
	return buf.data;
}

/* "a, b" for a column set. */
static char *
duet_colset_names(DuetRel *rel, DuetColSet *set)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < set->n; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, rel->cols[set->att[i] - 1].name);
	}
	return buf.data;
}

static void
duet_no_key_error(DuetRel *rel, DuetColSet *set, const char *what)
{
	if (rel->nkeys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("no unique index or constraint on \"%s\" matches the %s columns (%s)",
						rel->relname, what, duet_colset_names(rel, set)),
				 errdetail("Relation \"%s\" has no unique index or constraint.",
						   rel->relname)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
			 errmsg("no unique index or constraint on \"%s\" matches the %s columns (%s)",
					rel->relname, what, duet_colset_names(rel, set)),
			 errhint("Unique keys are: %s.", duet_key_list(rel))));
}

static bool
duet_colset_contains(DuetColSet *set, AttrNumber att)
{
	int			i;

	for (i = 0; i < set->n; i++)
		if (set->att[i] == att)
			return true;
	return false;
}

static void
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
static void
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
 * Converting JSON values
 * ----------------------------------------------------------------
 */

static char *duet_json_text(Oid typid, JsonbValue *v);

/* Append s double-quoted, as array and record literals quote an element. */
static void
duet_append_quoted(StringInfo buf, const char *s)
{
	const char *p;

	appendStringInfoChar(buf, '"');
	for (p = s; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '"');
}

/*
 * Append a JSON array as a PostgreSQL array literal ("{1,\"a b\",NULL}") of
 * elements of type elemtype.
 */
static void
duet_append_array_literal(StringInfo buf, JsonbContainer *arr, Oid elemtype)
{
	JsonbIterator *it = JsonbIteratorInit(arr);
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		first = true;

	appendStringInfoChar(buf, '{');
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		if (v.type == jbvNull)
			appendStringInfoString(buf, "NULL");
		else if (v.type == jbvBinary && JsonContainerIsArray(v.val.binary.data))
			duet_append_array_literal(buf, v.val.binary.data, elemtype);
		else
		{
			/* every element is quoted, so that no content is special */
			duet_append_quoted(buf, duet_json_text(elemtype, &v));
		}
	}
	appendStringInfoChar(buf, '}');
}

/*
 * Append a JSON object as the record literal of composite type typid
 * ("(1,\"a b\",)"): attributes are looked up by name, and an attribute the
 * object does not give is null, as jsonb_populate_record has it.
 */
static void
duet_append_record_literal(StringInfo buf, Oid typid, JsonbContainer *obj)
{
	TupleDesc	desc = lookup_rowtype_tupdesc(typid, -1);
	bool		first = true;
	int			i;

	appendStringInfoChar(buf, '(');
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		JsonbValue *v;

		if (att->attisdropped)
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		v = getKeyJsonValueFromContainer(obj, NameStr(att->attname),
										 strlen(NameStr(att->attname)), NULL);
		if (v != NULL && v->type != jbvNull)
			duet_append_quoted(buf, duet_json_text(att->atttypid, v));
	}
	appendStringInfoChar(buf, ')');
	ReleaseTupleDesc(desc);
}

/*
 * The text form of a JSON value for the input function of type typid: JSON
 * text for json and jsonb, a string's contents, a number's digits, an array
 * literal for a JSON array given to an array type, a record literal for a
 * JSON object given to a composite type (what to_jsonb makes of them).
 */
static char *
duet_json_text(Oid typid, JsonbValue *v)
{
	Oid			base = OidIsValid(typid) ? getBaseType(typid) : InvalidOid;

	if (base == JSONOID || base == JSONBOID)
	{
		if (v->type == jbvBinary)
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		return JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0);
	}
	switch (v->type)
	{
		case jbvNull:
			return "NULL";
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return v->val.boolean ? "true" : "false";
		case jbvBinary:
			if (OidIsValid(base))
			{
				StringInfoData buf;
				Oid			elemtype = get_element_type(base);

				if (OidIsValid(elemtype) && JsonContainerIsArray(v->val.binary.data))
				{
					initStringInfo(&buf);
					duet_append_array_literal(&buf, v->val.binary.data, elemtype);
					return buf.data;
				}
				if (type_is_rowtype(base) && JsonContainerIsObject(v->val.binary.data))
				{
					initStringInfo(&buf);
					duet_append_record_literal(&buf, base, v->val.binary.data);
					return buf.data;
				}
			}
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			elog(ERROR, "unexpected jsonb value type %d", v->type);
	}
	return NULL;				/* keep compiler quiet */
}

/* The text form of a JSON value for the input function of col's type. */
static char *
duet_value_text(DuetColumn *col, JsonbValue *v)
{
	return duet_json_text(col->typid, v);
}

/*
 * Conversion of JSON values into column values.  A conversion error is
 * reported as an error about the column, with the type's own message as
 * detail; the SQLSTATE is kept.  The state lives in a struct so that the
 * error handler sees what the conversion loop was doing.
 */
typedef struct DuetConvert
{
	DuetRel    *rel;
	DuetColumn *col;			/* set while an input function runs */
	int			element;		/* array element, for upsert_many; 0 if none */
} DuetConvert;

static Datum
duet_convert(DuetConvert *cv, DuetColumn *col, JsonbValue *v, bool *isnull)
{
	Datum		d;

	if (v->type == jbvNull)
	{
		*isnull = true;
		/* domains may refuse nulls: let the input function decide */
		if (getBaseType(col->typid) == col->typid)
			return (Datum) 0;
		cv->col = col;
		d = InputFunctionCall(&col->input, NULL, col->ioparam, col->typmod);
		cv->col = NULL;
		return d;
	}
	*isnull = false;
	cv->col = col;
	d = InputFunctionCall(&col->input, duet_value_text(col, v), col->ioparam,
						  col->typmod);
	cv->col = NULL;
	return d;
}

/*
 * Rethrow the error being handled as an error about the column whose value
 * was being converted, when it is a data error; otherwise rethrow it as is.
 * Called in PG_CATCH with the caller's memory context current.
 */
static void
duet_convert_error(DuetConvert *cv, MemoryContext cxt)
{
	ErrorData  *edata;
	int			cat;

	if (cv->col == NULL)
		PG_RE_THROW();

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	cat = ERRCODE_TO_CATEGORY(edata->sqlerrcode);
	if (cat != ERRCODE_DATA_EXCEPTION &&
		cat != ERRCODE_TO_CATEGORY(ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION))
		PG_RE_THROW();
	FlushErrorState();

	ereport(ERROR,
			(errcode(edata->sqlerrcode),
			 errmsg("invalid value for column \"%s\" of relation \"%s\"",
					cv->col->name, cv->rel->relname),
			 errdetail("%s", edata->message)));
}

/* A row given as jsonb: its columns and their values, in attnum order. */
typedef struct DuetRow
{
	DuetColSet	cols;
	Datum		values[MaxHeapAttributeNumber];
	bool		nulls[MaxHeapAttributeNumber];
} DuetRow;

/* SPI wants null flags as ' ' and 'n'. */
static char *
duet_spi_nulls(bool *nulls, int n)
{
	char	   *res = palloc(n + 1);
	int			i;

	for (i = 0; i < n; i++)
		res[i] = nulls[i] ? 'n' : ' ';
	res[n] = '\0';
	return res;
}

static void
duet_not_object(const char *what, const char *got)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s must be a JSON object", what),
			 errdetail("Got a JSON %s.", got)));
}

/* Error context of upsert_many: which element of the array is at fault. */
static void
duet_element_context(void *arg)
{
	DuetConvert *cv = (DuetConvert *) arg;

	if (cv->element > 0)
		errcontext("element %d of the rows array", cv->element);
}

/*
 * Read the columns of a JSON object into row: names checked, values
 * converted.  Must run inside PG_TRY with duet_convert_error in PG_CATCH.
 */
static void
duet_read_object(DuetConvert *cv, JsonbContainer *obj, DuetRow *row)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	k,
				v;
	JsonbIteratorToken tok;

	row->cols.n = 0;
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		DuetColumn *col;
		int			i;

		if (tok != WJB_KEY)
			continue;
		col = duet_value_column(cv->rel, k.val.string.val, k.val.string.len);
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		duet_colset_add(&row->cols, col->attnum);
		for (i = 0; row->cols.att[i] != col->attnum; i++)
			;
		/* keep values in the same (attnum) order as the set */
		memmove(&row->values[i + 1], &row->values[i],
				sizeof(Datum) * (row->cols.n - 1 - i));
		memmove(&row->nulls[i + 1], &row->nulls[i],
				sizeof(bool) * (row->cols.n - 1 - i));
		row->values[i] = duet_convert(cv, col, &v, &row->nulls[i]);
	}
}

/* Parse one jsonb object argument into row, with column-naming errors. */
static void
duet_read_row(DuetRel *rel, Jsonb *jb, const char *what, DuetRow *row)
{
	DuetConvert cv;
	MemoryContext cxt = CurrentMemoryContext;

	if (!JB_ROOT_IS_OBJECT(jb))
		duet_not_object(what, duet_json_typename(jb));

	cv.rel = rel;
	cv.col = NULL;
	cv.element = 0;
	PG_TRY();
	{
		duet_read_object(&cv, &jb->root, row);
	}
	PG_CATCH();
	{
		duet_convert_error(&cv, cxt);
	}
	PG_END_TRY();
}

/* ----------------------------------------------------------------
 * Statements
 * ----------------------------------------------------------------
 */

static void
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

static void
duet_append_signature(StringInfo buf, DuetColSet *set)
{
	int			i;

	for (i = 0; i < set->n; i++)
		appendStringInfo(buf, "%d,", set->att[i]);
	appendStringInfoChar(buf, '|');
}

/*
 * Look up a cached plan by signature, or prepare sql with argtypes and keep
 * it.  The SQL text is built only on a cache miss, by the callback.
 */
typedef void (*DuetSqlBuilder) (StringInfo sql, void *arg);

static SPIPlanPtr
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
		 * The rows come back in the order of the arrays: the function scan
		 * emits them in order and ModifyTable returns each as it goes.
		 */
		appendStringInfoString(sql, ") SELECT ");
		for (i = 0; i < spec->cols->n; i++)
		{
			DuetColumn *col = &rel->cols[spec->cols->att[i] - 1];

			appendStringInfo(sql, "%su.c%d", i > 0 ? ", " : "", i + 1);
			/* qualified: the plan is parsed again under the next search_path */
			if (col->as_text)
				appendStringInfo(sql, "::%s",
								 format_type_extended(col->typid, col->typmod,
													  FORMAT_TYPE_TYPEMOD_GIVEN |
													  FORMAT_TYPE_FORCE_QUALIFY));
		}
		appendStringInfoString(sql, " FROM ROWS FROM (");
		for (i = 0; i < spec->cols->n; i++)
			appendStringInfo(sql, "%spg_catalog.unnest($%d)", i > 0 ? ", " : "", i + 1);
		appendStringInfoString(sql, ") AS u(");
		for (i = 0; i < spec->cols->n; i++)
			appendStringInfo(sql, "%sc%d", i > 0 ? ", " : "", i + 1);
		appendStringInfoChar(sql, ')');
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
	appendStringInfo(&sig, "%c%c%c|", spec->kind, spec->only_if_changed ? 'c' : 'a',
					 spec->return_rows ? 'r' : 'n');
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
	appendStringInfo(&sig, "%c|", PLAN_FETCH_KEY);
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
 * A conflict kept happening with a row that the next statement could not
 * see: hidden by row-level security, or deleted again and again.
 */
static void
duet_invisible_conflict(DuetRel *rel, int attempts)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("conflicting row in relation \"%s\" is not visible", rel->relname),
			 errdetail("The insert conflicted %d times with a row that could not be read afterwards.",
					   attempts),
			 errhint("Row-level security may hide the row, or concurrent sessions keep deleting it.")));
}

/* Copy a jsonb result out of SPI's memory into cxt. */
static Datum
duet_copy_jsonb(Datum d, MemoryContext cxt)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

	d = PointerGetDatum(PG_DETOAST_DATUM_COPY(d));
	MemoryContextSwitchTo(oldcxt);
	return d;
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

/* ----------------------------------------------------------------
 * duet.get_or_create
 * ----------------------------------------------------------------
 */

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
