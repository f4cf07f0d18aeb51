/*-------------------------------------------------------------------------
 *
 * upsert_int.h
 *	  Definitions shared by the files of duet.upsert, duet.upsert_many and
 *	  duet.get_or_create.
 *
 * upsert_cache.c describes tables and caches their statements,
 * upsert_json.c converts jsonb rows into column values, upsert_errors.c
 * reports errors, and upsert.c and get_or_create.c hold the SQL-callable
 * functions.  Nothing here is visible outside those files.
 *
 * pg_ext/upsert_int.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef UPSERT_INT_H
#define UPSERT_INT_H

#include "access/htup_details.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/jsonb.h"

#include "duet_ext.h"

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
	int			namelen;
	AttrNumber	attnum;
	bool		dropped;
	char		generated;		/* attgenerated */
	Oid			typid;
	int32		typmod;
	Oid			collation;
	Oid			basetype;		/* typid, or the type a domain is over */
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

/* A column set: attribute numbers in ascending order. */
typedef struct DuetColSet
{
	int			n;
	AttrNumber	att[MaxHeapAttributeNumber];
} DuetColSet;

/* A row given as jsonb: its columns and their values, in attnum order. */
typedef struct DuetRow
{
	DuetColSet	cols;
	Datum		values[MaxHeapAttributeNumber];
	bool		nulls[MaxHeapAttributeNumber];
} DuetRow;

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

/*
 * Look up a cached plan by signature, or prepare sql with argtypes and keep
 * it.  The SQL text is built only on a cache miss, by the callback.
 */
typedef void (*DuetSqlBuilder) (StringInfo sql, void *arg);

/* upsert_cache.c: cached table descriptions and statements */

/*
 * Every SQL-callable function calls duet_enter on entry and duet_leave
 * before it returns; stale descriptions are freed only between calls.
 */
extern void duet_enter(void);
extern void duet_leave(void);
/* The table's cached description, rebuilt if stale; locks the table. */
extern DuetRel *duet_get_rel(Oid relid);
/* The column called name, which must not be a generated column. */
extern DuetColumn *duet_value_column(DuetRel *rel, const char *name, int len);
/* Column sets, kept sorted by attribute number. */
extern bool duet_colset_contains(DuetColSet *set, AttrNumber att);
extern void duet_colset_add(DuetColSet *set, AttrNumber att);
extern void duet_colset_from_array(DuetRel *rel, ArrayType *arr,
								   DuetColSet *set, const char *argname);
/* "prefix.a, prefix.b": a column set as quoted identifiers. */
extern void duet_append_colset(StringInfo buf, DuetRel *rel, DuetColSet *set,
							   const char *prefix);
/* "1,2,|": a column set in a plan signature. */
extern void duet_append_signature(StringInfo buf, DuetColSet *set);
extern SPIPlanPtr duet_get_plan(DuetRel *rel, const char *signature, int nargs,
								Oid *argtypes, DuetSqlBuilder build, void *arg);
/* Null flags as SPI_execute_plan wants them, palloc'd. */
extern char *duet_spi_nulls(bool *nulls, int n);
/* A copy in cxt of a jsonb datum returned by SPI. */
extern Datum duet_copy_jsonb(Datum d, MemoryContext cxt);

/* upsert_json.c: converting jsonb rows into column values */

/* The JSON type name of a jsonb document or value, as jsonb_typeof has it. */
extern const char *duet_json_typename(Jsonb *jb);
/* Rethrow a conversion error as an error about its column (in PG_CATCH). */
extern void duet_convert_error(DuetConvert *cv, MemoryContext cxt);
/* Error context callback naming the element of upsert_many's rows array. */
extern void duet_element_context(void *arg);
/* Read a JSON object into row; see upsert_json.c for the PG_TRY rule. */
extern void duet_read_object(DuetConvert *cv, JsonbContainer *obj,
							 DuetRow *row);
/* Read a jsonb object argument, called what in messages, into row. */
extern void duet_read_row(DuetRel *rel, Jsonb *jb, const char *what,
						  DuetRow *row);

/* upsert_errors.c: error reports */

/* "a, b, c" and "(id), (email)": a table's columns and unique keys. */
extern char *duet_column_list(DuetRel *rel);
extern char *duet_key_list(DuetRel *rel);
/* No unique key matches the what (conflict, lookup) columns set. */
extern void duet_no_key_error(DuetRel *rel, DuetColSet *set, const char *what);
/* An argument, called what, is a JSON got rather than an object. */
extern void duet_not_object(const char *what, const char *got);
/* A conflict kept happening with a row that could not be read. */
extern void duet_invisible_conflict(DuetRel *rel, int attempts);

#endif							/* UPSERT_INT_H */
