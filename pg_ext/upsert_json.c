/*-------------------------------------------------------------------------
 *
 * upsert_json.c
 *	  Conversion of jsonb rows into column values for duet.upsert,
 *	  duet.upsert_many and duet.get_or_create.
 *
 * A row is given as a jsonb object whose keys are column names.  Each value
 * is turned into the text form that the column type's input function reads
 * (JSON text for json and jsonb, an array literal for a JSON array given to
 * an array type, a record literal for a JSON object given to a composite
 * type) and converted in C, so that a bad value is reported with the
 * column's name and the type's own message as detail.  The converted values
 * are then bound as parameters: they are never spliced into SQL text.
 *
 * pg_ext/upsert_json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "upsert_int.h"

/* The JSON type name of a jsonb value, as jsonb_typeof spells it. */
const char *
duet_json_typename(Jsonb *jb)
{
	JsonbValue	v;

	if (JB_ROOT_IS_OBJECT(jb))
		return "object";
	if (JB_ROOT_IS_ARRAY(jb) && !JB_ROOT_IS_SCALAR(jb))
		return "array";
	if (!JsonbExtractScalar(&jb->root, &v))
		return "unknown";
	return duet_jbv_typename(&v);
}

const char *
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

static char *duet_json_text(Oid base, JsonbValue *v);

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
 * elements of type elembase (a base type: domains resolved).
 */
static void
duet_append_array_literal(StringInfo buf, JsonbContainer *arr, Oid elembase)
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
			duet_append_array_literal(buf, v.val.binary.data, elembase);
		else
		{
			/* every element is quoted, so that no content is special */
			duet_append_quoted(buf, duet_json_text(elembase, &v));
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
			duet_append_quoted(buf, duet_json_text(getBaseType(att->atttypid), v));
	}
	appendStringInfoChar(buf, ')');
	ReleaseTupleDesc(desc);
}

/*
 * The text form of a JSON value for the input function of a type whose base
 * type is base (the type itself unless it is a domain): JSON text for json
 * and jsonb, a string's contents, a number's digits, an array literal for a
 * JSON array given to an array type, a record literal for a JSON object
 * given to a composite type (what to_jsonb makes of them).
 */
static char *
duet_json_text(Oid base, JsonbValue *v)
{
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
					duet_append_array_literal(&buf, v->val.binary.data,
											  getBaseType(elemtype));
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

static Datum
duet_convert(DuetConvert *cv, DuetColumn *col, JsonbValue *v, bool *isnull)
{
	Datum		d;

	if (v->type == jbvNull)
	{
		*isnull = true;
		/* domains may refuse nulls: let the input function decide */
		if (col->basetype == col->typid)
			return (Datum) 0;
		cv->col = col;
		d = InputFunctionCall(&col->input, NULL, col->ioparam, col->typmod);
		cv->col = NULL;
		return d;
	}
	*isnull = false;
	/* a string for a text column is taken as it is: textin would copy it */
	if (v->type == jbvString && col->typid == TEXTOID)
		return PointerGetDatum(cstring_to_text_with_len(v->val.string.val,
														v->val.string.len));
	cv->col = col;
	d = InputFunctionCall(&col->input, duet_json_text(col->basetype, v),
						  col->ioparam, col->typmod);
	cv->col = NULL;
	return d;
}

/*
 * Rethrow the error being handled as an error about the column whose value
 * was being converted, when it is a data error; otherwise rethrow it as is.
 * Called in PG_CATCH with the caller's memory context current.
 */
void
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

/* Error context of upsert_many: which element of the array is at fault. */
void
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
void
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
void
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
