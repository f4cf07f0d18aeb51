/*-------------------------------------------------------------------------
 *
 * explain.c
 *	  duet.explain, duet.plan_nodes and duet.plan_advice.
 *
 * What ORMs offer as query.explain(analyze=True), for any client: the plan
 * of a query as jsonb, one row per plan node with estimated and actual
 * figures side by side, and advice drawn from the plan (a sequential scan
 * filtering a large table, with the CREATE INDEX that would help; a row
 * misestimate of 10x or more; a sort or hash that spilled to disk; a nested
 * loop over a large outer side).
 *
 * The plan comes from ExplainQuery with FORMAT JSON, so it is exactly what
 * EXPLAIN prints; the query is parsed once, wrapped in an ExplainStmt
 * rather than pasted behind "EXPLAIN" in SQL text.  Query parameters ($1,
 * $2...) are given as text and converted to the types that parse analysis
 * infers for them; they are bound, never spliced.  With analyze, the
 * statement runs inside a subtransaction that is always rolled back, so a
 * data-changing statement changes nothing (sequences excepted, as
 * everywhere in PostgreSQL).
 *
 * plan_nodes and plan_advice read that JSON document, or one the caller
 * made elsewhere (their jsonb versions, which run nothing: a statement can
 * be explained once and both read from its plan); the advice about
 * filters names columns found in the filter text that EXPLAIN VERBOSE
 * prints, which is a heuristic: an expression index, for instance, is not
 * suggested.
 *
 * pg_ext/explain.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/explain.h"
#include "nodes/makefuncs.h"
#include "nodes/params.h"
#include "parser/parse_node.h"
#include "tcop/dest.h"
#include "utils/snapmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "parser/parser.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/syscache.h"

#include "duet_ext.h"

PG_FUNCTION_INFO_V1(duet_explain);
PG_FUNCTION_INFO_V1(duet_plan_nodes);
PG_FUNCTION_INFO_V1(duet_plan_advice);
PG_FUNCTION_INFO_V1(duet_plan_nodes_plan);
PG_FUNCTION_INFO_V1(duet_plan_advice_plan);

/* a misestimate at least this large is reported */
#define DUET_MISESTIMATE_FACTOR	10.0

/* duet.advice_min_rows: tables and outer sides smaller than this are fine */
static int	duet_advice_min_rows = 10000;

/*
 * Module initialisation: the advice threshold is a per-session setting, so
 * that one query can be examined with another threshold.
 */
void
duet_explain_init(void)
{
	DefineCustomIntVariable("duet.advice_min_rows",
							"Rows from which duet.plan_advice reports sequential scans and nested loops.",
							"A sequential scan with a filter is reported on tables of at least this many "
							"rows, and a nested loop when its outer side gives at least this many rows.",
							&duet_advice_min_rows,
							10000, 0, INT_MAX,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
}

/* ----------------------------------------------------------------
 * Running EXPLAIN
 * ----------------------------------------------------------------
 */

/*
 * Parse query, which must be one statement that EXPLAIN accepts; a second
 * statement is refused rather than ignored.
 */
static RawStmt *
duet_check_query(const char *query)
{
	List	   *stmts;
	RawStmt    *raw;

	stmts = raw_parser(query, RAW_PARSE_DEFAULT);

	if (list_length(stmts) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("query must be exactly one statement"),
				 errdetail("Got %d statements.", list_length(stmts))));
	raw = linitial_node(RawStmt, stmts);
	switch (nodeTag(raw->stmt))
	{
		case T_SelectStmt:
		case T_InsertStmt:
		case T_UpdateStmt:
		case T_DeleteStmt:
		case T_MergeStmt:
		case T_DeclareCursorStmt:
		case T_CreateTableAsStmt:
		case T_ExecuteStmt:
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot explain a statement of type %s",
							CreateCommandName(raw->stmt)),
					 errhint("EXPLAIN accepts SELECT, INSERT, UPDATE, DELETE, MERGE, VALUES, "
							 "EXECUTE, DECLARE and CREATE TABLE AS.")));
	}
	return raw;
}

/*
 * Errors in the query text point into the query, not into the statement
 * that called us: the position becomes an internal one, as SPI does.
 */
static void
duet_query_context(void *arg)
{
	const char *query = (const char *) arg;
	int			pos = geterrposition();

	if (pos > 0)
	{
		errposition(0);
		internalerrposition(pos);
		internalerrquery(query);
	}
}

static void
duet_param_context(void *arg)
{
	errcontext("parameter $%d", *(int *) arg + 1);
}

/*
 * Receives EXPLAIN's output, one text row (a single one for FORMAT JSON),
 * into a buffer.
 */
typedef struct DuetExplainReceiver
{
	DestReceiver pub;
	StringInfoData buf;
} DuetExplainReceiver;

static bool
duet_explain_receive(TupleTableSlot *slot, DestReceiver *self)
{
	DuetExplainReceiver *r = (DuetExplainReceiver *) self;

	slot_getallattrs(slot);
	if (!slot->tts_isnull[0])
	{
		text	   *t = DatumGetTextPP(slot->tts_values[0]);

		appendBinaryStringInfo(&r->buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	return true;
}

static void
duet_explain_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
duet_explain_noop(DestReceiver *self)
{
}

/*
 * Parameter values for the types that parse analysis inferred, as PREPARE
 * without types would: a parameter nothing constrains, or that the query
 * never uses, is text.
 */
static ParamListInfo
duet_explain_params(ArrayType *arr, Oid *types, int ntypes)
{
	ParamListInfo params;
	Datum	   *elems;
	bool	   *elemnulls;
	int			nelems;
	int			i;
	ErrorContextCallback errcallback;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elemnulls, &nelems);
	if (ntypes != nelems)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wrong number of parameter values for query"),
				 errdetail("Expected %d parameters but got %d.", ntypes, nelems)));

	params = makeParamList(ntypes);
	for (i = 0; i < ntypes; i++)
	{
		ParamExternData *prm = &params->params[i];
		Oid			typinput,
					ioparam;

		/* unknown, or not used at all (the query uses $2 but not $1) */
		prm->ptype = (types[i] == UNKNOWNOID || !OidIsValid(types[i])) ?
			TEXTOID : types[i];
		prm->pflags = PARAM_FLAG_CONST;
		prm->isnull = elemnulls[i];
		prm->value = (Datum) 0;
		if (elemnulls[i])
			continue;
		getTypeInputInfo(prm->ptype, &typinput, &ioparam);
		errcallback.callback = duet_param_context;
		errcallback.arg = &i;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;
		prm->value = OidInputFunctionCall(typinput, TextDatumGetCString(elems[i]),
										  ioparam, -1);
		error_context_stack = errcallback.previous;
	}
	return params;
}

/*
 * EXPLAIN (FORMAT JSON) of query, as text.  The statement is parsed once:
 * its raw tree is wrapped in an ExplainStmt, analyzed (inferring parameter
 * types when values are given) and handed to ExplainQuery, as the utility
 * machinery would do for a client's EXPLAIN.
 */
static char *
duet_explain_text(const char *query, bool analyze, ArrayType *paramvalues,
				  bool verbose)
{
	ExplainStmt *stmt = makeNode(ExplainStmt);
	RawStmt    *wrap = makeNode(RawStmt);
	RawStmt    *raw;
	Query	   *q;
	ParamListInfo params = NULL;
	ParseState *pstate;
	DuetExplainReceiver rcv;
	ErrorContextCallback errcallback;

	errcallback.callback = duet_query_context;
	errcallback.arg = (void *) query;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	raw = duet_check_query(query);
	stmt->query = raw->stmt;
	stmt->options = list_make3(makeDefElem("format", (Node *) makeString("json"), -1),
							   makeDefElem("analyze", (Node *) makeString(analyze ? "true" : "false"), -1),
							   makeDefElem("verbose", (Node *) makeString(verbose ? "true" : "false"), -1));
	wrap->stmt = (Node *) stmt;
	wrap->stmt_location = raw->stmt_location;
	wrap->stmt_len = raw->stmt_len;
	if (paramvalues != NULL)
	{
		Oid		   *types = NULL;
		int			ntypes = 0;

		q = parse_analyze_varparams(wrap, query, &types, &ntypes, NULL);
		error_context_stack = errcallback.previous;
		params = duet_explain_params(paramvalues, types, ntypes);
	}
	else
	{
		q = parse_analyze_fixedparams(wrap, query, NULL, 0, NULL);
		error_context_stack = errcallback.previous;
	}

	memset(&rcv, 0, sizeof(rcv));
	rcv.pub.receiveSlot = duet_explain_receive;
	rcv.pub.rStartup = duet_explain_startup;
	rcv.pub.rShutdown = duet_explain_noop;
	rcv.pub.rDestroy = duet_explain_noop;
	rcv.pub.mydest = DestNone;
	initStringInfo(&rcv.buf);

	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = query;

	/* like any utility statement, EXPLAIN runs with a fresh snapshot */
	PushActiveSnapshot(GetTransactionSnapshot());
	ExplainQuery(pstate, castNode(ExplainStmt, q->utilityStmt), params,
				 (DestReceiver *) &rcv);
	PopActiveSnapshot();
	free_parsestate(pstate);
	return rcv.buf.data;
}

/* ----------------------------------------------------------------
 * EXPLAIN's JSON text into jsonb
 *
 * The plan's text is read straight into a JsonbValue tree, which
 * JsonbValueToJsonb() turns into the jsonb that jsonb_in would give:
 * strings without escapes point into the text, keys are put in jsonb's
 * order as they are read (EXPLAIN prints a dozen or so a node, never the
 * same twice), and the figures EXPLAIN prints become numerics straight from
 * their digits.  jsonb_in copies every string twice through a general
 * lexer, pushJsonbValue() sorts keys with qsort and numeric_in is general
 * too: together they cost about as much as printing the result, which
 * matters on a cheap plan.  Anything the reader does not expect makes it
 * give up, and the caller falls back on jsonb_in.
 * ----------------------------------------------------------------
 */

/* deeper documents are left to jsonb_in, which checks the stack depth */
#define DUET_JSON_MAX_DEPTH 64

static bool duet_read_value(char **pp, int depth, JsonbValue *v);

/* EXPLAIN indents its JSON with spaces; other blanks make the reader give up */
static inline char *
duet_skip_blanks(char *p)
{
	return p + strspn(p, " \n");
}

/*
 * A string, *pp at its opening quote.  Escapes other than \uXXXX are
 * undone into a copy; \uXXXX is left to jsonb_in.
 */
static bool
duet_read_string(char **pp, JsonbValue *v)
{
	char	   *start = *pp + 1;
	char	   *p = start;
	char	   *end;
	char	   *out;

	while (*p != '"' && *p != '\\' && *p != '\0')
		p++;
	v->type = jbvString;
	v->val.string.val = start;
	if (*p == '"')
	{
		v->val.string.len = p - start;
		*pp = p + 1;
		return true;
	}

	/* the unescaped text is no longer than the escaped one up to the quote */
	for (end = p; *end != '"'; end++)
	{
		if (*end == '\0' || (*end == '\\' && *++end == '\0'))
			return false;
	}
	out = palloc(end - start + 1);
	memcpy(out, start, p - start);
	v->val.string.val = out;
	out += p - start;
	while (*p != '"')
	{
		if (*p == '\0')
			return false;
		if (*p != '\\')
		{
			*out++ = *p++;
			continue;
		}
		switch (*++p)
		{
			case '"':
			case '\\':
			case '/':
				*out++ = *p;
				break;
			case 'b':
				*out++ = '\b';
				break;
			case 'f':
				*out++ = '\f';
				break;
			case 'n':
				*out++ = '\n';
				break;
			case 'r':
				*out++ = '\r';
				break;
			case 't':
				*out++ = '\t';
				break;
			default:
				return false;
		}
		p++;
	}
	v->val.string.len = out - v->val.string.val;
	*pp = p + 1;
	return true;
}

/*
 * A number.  EXPLAIN prints integers and fixed-point figures ("12.50"); up
 * to 18 digits, int64_div_fast_to_numeric() makes the same numeric (value
 * and display scale) as numeric_in, at a fraction of its cost.  Anything
 * else goes through numeric_in, as in jsonb_in.
 */
static bool
duet_read_number(char **pp, JsonbValue *v)
{
	char	   *start = *pp;
	char	   *p = start;
	int64		val = 0;
	int			digits = 0;
	int			scale = -1;		/* digits after the point, -1 without one */

	if (*p == '-')
		p++;
	for (;; p++)
	{
		if (*p >= '0' && *p <= '9')
		{
			if (++digits <= 18)
				val = val * 10 + (*p - '0');
			if (scale >= 0)
				scale++;
		}
		else if (*p == '.' && scale < 0 && digits > 0)
			scale = 0;
		else
			break;
	}
	if (digits == 0 || scale == 0)
		return false;

	v->type = jbvNumeric;
	if (digits <= 18 && *p != 'e' && *p != 'E')
		v->val.numeric = int64_div_fast_to_numeric(*start == '-' ? -val : val,
												   Max(scale, 0));
	else
	{
		char		save;

		while (*p == 'e' || *p == 'E' || *p == '+' || *p == '-' ||
			   (*p >= '0' && *p <= '9'))
			p++;
		save = *p;
		*p = '\0';
		v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
															 CStringGetDatum(start),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));
		*p = save;
	}
	*pp = p;
	return true;
}

/* jsonb's order of keys: shorter first, then bytewise */
static inline int
duet_key_cmp(const JsonbValue *a, const JsonbValue *b)
{
	if (a->val.string.len != b->val.string.len)
		return a->val.string.len < b->val.string.len ? -1 : 1;
	return memcmp(a->val.string.val, b->val.string.val, a->val.string.len);
}

/*
 * An array, or an object whose pairs are kept in jsonb's order of keys by
 * inserting each where it belongs.  A key seen twice makes the reader give
 * up: jsonb_in knows which one wins.
 */
static bool
duet_read_container(char **pp, int depth, JsonbValue *v)
{
	bool		object = (**pp == '{');
	char		close = object ? '}' : ']';
	char	   *p = duet_skip_blanks(*pp + 1);
	int			size = 16;
	int			n = 0;
	JsonbValue *elems = NULL;
	JsonbPair  *pairs = NULL;

	if (depth >= DUET_JSON_MAX_DEPTH)
		return false;
	if (object)
		pairs = palloc(size * sizeof(JsonbPair));
	else
		elems = palloc(size * sizeof(JsonbValue));

	while (*p != close)
	{
		if (n > 0)
		{
			if (*p != ',')
				return false;
			p = duet_skip_blanks(p + 1);
		}
		if (n == size)
		{
			size *= 2;
			if (object)
				pairs = repalloc(pairs, size * sizeof(JsonbPair));
			else
				elems = repalloc(elems, size * sizeof(JsonbValue));
		}
		if (object)
		{
			JsonbValue	key;
			int			i = n;
			int			cmp = 1;

			if (*p != '"' || !duet_read_string(&p, &key))
				return false;
			p = duet_skip_blanks(p);
			if (*p != ':')
				return false;
			p = duet_skip_blanks(p + 1);

			while (i > 0 && (cmp = duet_key_cmp(&pairs[i - 1].key, &key)) > 0)
				i--;
			if (cmp == 0)
				return false;
			memmove(&pairs[i + 1], &pairs[i], (n - i) * sizeof(JsonbPair));
			pairs[i].key = key;
			pairs[i].order = n;
			if (!duet_read_value(&p, depth + 1, &pairs[i].value))
				return false;
		}
		else if (!duet_read_value(&p, depth + 1, &elems[n]))
			return false;
		n++;
		p = duet_skip_blanks(p);
	}
	*pp = p + 1;

	if (object)
	{
		v->type = jbvObject;
		v->val.object.nPairs = n;
		v->val.object.pairs = pairs;
	}
	else
	{
		v->type = jbvArray;
		v->val.array.nElems = n;
		v->val.array.elems = elems;
		v->val.array.rawScalar = false;
	}
	return true;
}

/* Any JSON value, *pp at its first character. */
static bool
duet_read_value(char **pp, int depth, JsonbValue *v)
{
	char	   *p = *pp;

	switch (*p)
	{
		case '{':
		case '[':
			return duet_read_container(pp, depth, v);
		case '"':
			return duet_read_string(pp, v);
		case 't':
		case 'f':
			v->type = jbvBool;
			v->val.boolean = (*p == 't');
			if (strncmp(p, v->val.boolean ? "true" : "false", v->val.boolean ? 4 : 5) != 0)
				return false;
			*pp = p + (v->val.boolean ? 4 : 5);
			return true;
		case 'n':
			v->type = jbvNull;
			if (strncmp(p, "null", 4) != 0)
				return false;
			*pp = p + 4;
			return true;
		default:
			return duet_read_number(pp, v);
	}
}

/*
 * The jsonb of the text EXPLAIN (FORMAT JSON) printed, or NULL when the
 * reader gives up.
 */
static Jsonb *
duet_plan_to_jsonb(char *text)
{
	char	   *p = duet_skip_blanks(text);
	JsonbValue	v;

	if ((*p != '[' && *p != '{') || !duet_read_container(&p, 0, &v))
		return NULL;
	if (*duet_skip_blanks(p) != '\0')
		return NULL;
	return JsonbValueToJsonb(&v);
}

/*
 * The plan of query as EXPLAIN (FORMAT JSON) gives it.  With analyze the
 * statement runs in a subtransaction that is rolled back whatever happens,
 * so that nothing it does survives.
 */
static Jsonb *
duet_run_explain(text *querytext, bool analyze, ArrayType *params, bool verbose)
{
	char	   *query = text_to_cstring(querytext);
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	char	   *volatile plan = NULL;

	if (!analyze)
		plan = duet_explain_text(query, false, params, verbose);
	else
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(oldcxt);
		PG_TRY();
		{
			plan = duet_explain_text(query, true, params, verbose);
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcxt);
			CurrentResourceOwner = oldowner;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			/* leave the subtransaction before reporting, so callers see ours */
			MemoryContextSwitchTo(oldcxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(oldcxt);
			CurrentResourceOwner = oldowner;
			ReThrowError(edata);
		}
		PG_END_TRY();
	}
	{
		Jsonb	   *doc = duet_plan_to_jsonb(plan);

		if (doc != NULL)
			return doc;
	}
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(plan)));
}

/*
 * duet.explain(query, analyze, params, verbose) returns jsonb
 *
 * The plan of query as EXPLAIN (FORMAT JSON) prints it, with VERBOSE when
 * asked: what duet.plan_nodes(jsonb) and duet.plan_advice(jsonb) read best,
 * since VERBOSE names each relation's schema.
 */
Datum
duet_explain(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(duet_run_explain(PG_GETARG_TEXT_PP(0),
									   !PG_ARGISNULL(1) && PG_GETARG_BOOL(1),
									   PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
									   /* a 1.0 script from before verbose has 3 */
									   PG_NARGS() > 3 && !PG_ARGISNULL(3) && PG_GETARG_BOOL(3)));
}

/* ----------------------------------------------------------------
 * Plan nodes
 *
 * The plan is a jsonb document: one that duet_run_explain made, or one that
 * the caller of duet.plan_nodes(jsonb) or duet.plan_advice(jsonb) gives,
 * which can be anything.  Its shape is checked: an array of objects that
 * each hold a "Plan" object (one such object alone is accepted too, as
 * auto_explain logs it), each node an object with a string "Node Type" and,
 * when it has children, an array of objects as "Plans".  Anything else is
 * an error.  Every other key is optional, and a value of the wrong type (a
 * figure that is not a number, a name that is not a string, a flag that is
 * not a boolean) is taken as absent, as a key that another version of
 * EXPLAIN does not print would be.
 * ----------------------------------------------------------------
 */

/* What is known about one plan node; a number is NaN when absent. */
typedef struct DuetNode
{
	int			id;				/* 1-based, in EXPLAIN's order */
	int			parent;			/* 0 for the top node */
	char	   *node_type;
	char	   *schema;
	char	   *relname;
	char	   *index_name;
	char	   *relationship;	/* "Outer", "Inner", "InitPlan"... */
	char	   *alias;
	char	   *filter;
	char	   *join_filter;
	double		startup_cost;
	double		total_cost;
	double		plan_rows;
	double		actual_rows;	/* per loop */
	double		loops;
	double		total_time;		/* per loop, ms */
	double		removed_by_filter;
	char	   *sort_space_type;
	double		sort_space_used;
	double		hash_batches;
	double		orig_hash_batches;
	double		peak_memory;
	double		hashagg_batches;
	double		disk_usage;
	List	   *children;		/* DuetNode * */
} DuetNode;

/* What a jsonb value is, for error details: "an array", "null"... */
static const char *
duet_jtype(JsonbValue *v)
{
	const char *name = duet_jbv_typename(v);

	if (v->type == jbvNull)
		return name;
	return psprintf("%s %s", strchr("aeiou", name[0]) ? "an" : "a", name);
}

/* v's container when v is an object, else NULL. */
static JsonbContainer *
duet_jobject(const JsonbValue *v)
{
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
		return v->val.binary.data;
	return NULL;
}

static void duet_bad_plan(const char *detail) pg_attribute_noreturn();

/* A document that is not a plan: detail says what was found instead. */
static void
duet_bad_plan(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("plan is not an EXPLAIN (FORMAT JSON) document"),
			 errdetail_internal("%s", detail),
			 errhint("Pass the output of EXPLAIN (FORMAT JSON) or of duet.explain().")));
}

/*
 * The value of key in object c, in *res, or NULL; never looks into arrays.
 * Nothing is allocated: a plan can have a great many nodes.
 */
static JsonbValue *
duet_jget(JsonbContainer *c, const char *key, JsonbValue *res)
{
	if (!JsonContainerIsObject(c))
		return NULL;
	return getKeyJsonValueFromContainer(c, key, strlen(key), res);
}

static char *
duet_jstr(JsonbContainer *c, const char *key)
{
	JsonbValue	res;
	JsonbValue *v = duet_jget(c, key, &res);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A figure; beyond float8's range it is infinite rather than an error. */
static double
duet_jnum(JsonbContainer *c, const char *key)
{
	JsonbValue	res;
	JsonbValue *v = duet_jget(c, key, &res);

	if (v == NULL || v->type != jbvNumeric)
		return NAN;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
											  NumericGetDatum(v->val.numeric)));
}

static bool
duet_jbool(JsonbContainer *c, const char *key)
{
	JsonbValue	res;
	JsonbValue *v = duet_jget(c, key, &res);

	return v != NULL && v->type == jbvBool && v->val.boolean;
}

/*
 * The node's name as EXPLAIN's text format would print it, which is what
 * people recognise: "Parallel Seq Scan", "HashAggregate", "Insert".  The
 * caller has checked that "Node Type" is a string.
 */
static char *
duet_node_name(JsonbContainer *c)
{
	char	   *type = duet_jstr(c, "Node Type");
	char	   *strategy = duet_jstr(c, "Strategy");
	char	   *operation = duet_jstr(c, "Operation");

	if (strcmp(type, "ModifyTable") == 0 && operation != NULL)
		type = operation;
	else if (strcmp(type, "Aggregate") == 0 && strategy != NULL)
	{
		if (strcmp(strategy, "Sorted") == 0)
			type = "GroupAggregate";
		else if (strcmp(strategy, "Hashed") == 0)
			type = "HashAggregate";
		else if (strcmp(strategy, "Mixed") == 0)
			type = "MixedAggregate";
	}
	if (duet_jbool(c, "Parallel Aware"))
		return psprintf("Parallel %s", type);
	return pstrdup(type);
}

/* The figures and names of plan node c, which has a string "Node Type". */
static void
duet_read_node(JsonbContainer *c, DuetNode *n)
{
	n->node_type = duet_node_name(c);
	n->schema = duet_jstr(c, "Schema");
	n->relname = duet_jstr(c, "Relation Name");
	n->index_name = duet_jstr(c, "Index Name");
	n->relationship = duet_jstr(c, "Parent Relationship");
	n->alias = duet_jstr(c, "Alias");
	n->filter = duet_jstr(c, "Filter");
	n->join_filter = duet_jstr(c, "Join Filter");
	n->startup_cost = duet_jnum(c, "Startup Cost");
	n->total_cost = duet_jnum(c, "Total Cost");
	n->plan_rows = duet_jnum(c, "Plan Rows");
	n->actual_rows = duet_jnum(c, "Actual Rows");
	n->loops = duet_jnum(c, "Actual Loops");
	n->total_time = duet_jnum(c, "Actual Total Time");
	n->removed_by_filter = duet_jnum(c, "Rows Removed by Filter");
	n->sort_space_type = duet_jstr(c, "Sort Space Type");
	n->sort_space_used = duet_jnum(c, "Sort Space Used");
	n->hash_batches = duet_jnum(c, "Hash Batches");
	n->orig_hash_batches = duet_jnum(c, "Original Hash Batches");
	n->peak_memory = duet_jnum(c, "Peak Memory Usage");
	n->hashagg_batches = duet_jnum(c, "HashAgg Batches");
	n->disk_usage = duet_jnum(c, "Disk Usage");
}

static DuetNode *duet_walk_plan(JsonbContainer *c, int parent, List **nodes);

/* The children of node n, "Plans" being what its object holds there. */
static void
duet_walk_children(JsonbValue *plans, DuetNode *n, List **nodes)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			i = 0;

	if (plans->type != jbvBinary || !JsonContainerIsArray(plans->val.binary.data))
		duet_bad_plan(psprintf("\"Plans\" of plan node %d is %s, not an array.",
							   n->id, duet_jtype(plans)));
	it = JsonbIteratorInit(plans->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbContainer *child;

		if (tok != WJB_ELEM)
			continue;
		i++;
		child = duet_jobject(&v);
		if (child == NULL)
			duet_bad_plan(psprintf("Element %d of \"Plans\" of plan node %d is %s, not an object.",
								   i, n->id, duet_jtype(&v)));
		n->children = lappend(n->children, duet_walk_plan(child, n->id, nodes));
	}
}

/*
 * Walk plan node c and its "Plans", appending nodes in pre-order; returns
 * c's node.  A caller's document can nest as deep as jsonb allows.
 */
static DuetNode *
duet_walk_plan(JsonbContainer *c, int parent, List **nodes)
{
	DuetNode   *n = palloc0(sizeof(DuetNode));
	JsonbValue	res;
	JsonbValue *type;
	JsonbValue *plans;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	n->id = list_length(*nodes) + 1;
	n->parent = parent;
	type = duet_jget(c, "Node Type", &res);
	if (type == NULL)
		duet_bad_plan(psprintf("Plan node %d has no \"Node Type\" key.", n->id));
	if (type->type != jbvString)
		duet_bad_plan(psprintf("\"Node Type\" of plan node %d is %s, not a string.",
							   n->id, duet_jtype(type)));
	duet_read_node(c, n);
	*nodes = lappend(*nodes, n);

	plans = duet_jget(c, "Plans", &res);
	if (plans != NULL)
		duet_walk_children(plans, n, nodes);
	return n;
}

/* One statement's entry: an object holding "Plan" (element, 1-based, or 0). */
static void
duet_walk_statement(JsonbContainer *c, int element, List **nodes)
{
	JsonbValue	res;
	JsonbValue *plan = duet_jget(c, "Plan", &res);
	JsonbContainer *top;

	if (plan == NULL)
		duet_bad_plan(element > 0 ?
					  psprintf("Element %d of the array has no \"Plan\" key.", element) :
					  "The object has no \"Plan\" key.");
	top = duet_jobject(plan);
	if (top == NULL)
		duet_bad_plan(element > 0 ?
					  psprintf("\"Plan\" of element %d of the array is %s, not an object.",
							   element, duet_jtype(plan)) :
					  psprintf("\"Plan\" is %s, not an object.", duet_jtype(plan)));
	(void) duet_walk_plan(top, 0, nodes);
}

/*
 * The nodes of every plan in an EXPLAIN (FORMAT JSON) document, numbered
 * on across statements (a rule can add some; a utility statement it adds,
 * such as NOTIFY, is a bare string in the array).  An empty array, which is
 * what EXPLAIN prints for a statement that rewrites to nothing, has none.
 */
static List *
duet_plan_list(Jsonb *doc)
{
	List	   *nodes = NIL;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			i = 0;

	if (JB_ROOT_IS_SCALAR(doc))
	{
		if (!JsonbExtractScalar(&doc->root, &v))
			v.type = jbvNull;
		duet_bad_plan(psprintf("The plan is %s, not an array or an object.",
							   duet_jtype(&v)));
	}
	if (JB_ROOT_IS_OBJECT(doc))
	{
		duet_walk_statement(&doc->root, 0, &nodes);
		return nodes;
	}
	it = JsonbIteratorInit(&doc->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbContainer *statement;

		if (tok != WJB_ELEM)
			continue;
		i++;
		/* a utility statement that a rule adds is a bare string there */
		if (v.type == jbvString)
			continue;
		statement = duet_jobject(&v);
		if (statement == NULL)
			duet_bad_plan(psprintf("Element %d of the array is %s, not an object.",
								   i, duet_jtype(&v)));
		duet_walk_statement(statement, i, &nodes);
	}
	return nodes;
}

/* How many times the estimate was off, or NaN without actual figures. */
static double
duet_misestimate(DuetNode *n)
{
	double		hi,
				lo;

	if (isnan(n->actual_rows) || isnan(n->plan_rows) || isnan(n->loops) ||
		n->loops == 0)
		return NAN;
	hi = Max(n->actual_rows, n->plan_rows);
	lo = Min(n->actual_rows, n->plan_rows);
	return Max(hi, 1.0) / Max(lo, 1.0);
}

static char *
duet_node_relation(DuetNode *n)
{
	if (n->relname == NULL)
		return NULL;
	if (n->schema == NULL)
		return pstrdup(quote_identifier(n->relname));
	return pstrdup(quote_qualified_identifier(n->schema, n->relname));
}

/*
 * The plan nodes a call is about: those of the plan given as jsonb, or, for
 * the (query, analyze, params) versions, those of the query's plan, made
 * here with VERBOSE so that relations come with their schema.  The first
 * argument is not null.
 */
static List *
duet_nodes_for_args(FunctionCallInfo fcinfo, bool from_query)
{
	Jsonb	   *doc;

	if (!from_query)
		return duet_plan_list(PG_GETARG_JSONB_P(0));
	doc = duet_run_explain(PG_GETARG_TEXT_PP(0),
						   !PG_ARGISNULL(1) && PG_GETARG_BOOL(1),
						   PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
						   true);
	return duet_plan_list(doc);
}

/*
 * One row per plan node, in EXPLAIN's order: ids from 1, parent null for
 * the top node.  Actual figures are null without analyze; time_ms is the
 * node's inclusive time over all loops.
 */
static Datum
duet_nodes_srf(FunctionCallInfo fcinfo, bool from_query)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	List	   *nodes;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	nodes = duet_nodes_for_args(fcinfo, from_query);

	foreach(lc, nodes)
	{
		DuetNode   *n = (DuetNode *) lfirst(lc);
		Datum		values[13];
		bool		nulls[13];
		char	   *rel = duet_node_relation(n);
		double		nums[8];
		int			i;

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(n->id);
		values[1] = Int32GetDatum(n->parent);
		nulls[1] = n->parent == 0;
		values[2] = CStringGetTextDatum(n->node_type);
		nulls[3] = rel == NULL;
		if (rel != NULL)
			values[3] = CStringGetTextDatum(rel);
		nulls[4] = n->index_name == NULL;
		if (n->index_name != NULL)
			values[4] = CStringGetTextDatum(n->index_name);

		nums[0] = n->startup_cost;
		nums[1] = n->total_cost;
		nums[2] = n->plan_rows;
		nums[3] = n->actual_rows;
		nums[4] = n->loops;
		nums[5] = isnan(n->total_time) || isnan(n->loops) ? NAN :
			n->total_time * n->loops;
		nums[6] = duet_misestimate(n);
		for (i = 0; i < 7; i++)
		{
			nulls[5 + i] = isnan(nums[i]);
			values[5 + i] = Float8GetDatum(nums[i]);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* duet.plan_nodes(query, analyze, params) returns setof record */
Datum
duet_plan_nodes(PG_FUNCTION_ARGS)
{
	return duet_nodes_srf(fcinfo, true);
}

/*
 * duet.plan_nodes(plan jsonb) returns setof record
 *
 * The same rows for a plan made elsewhere: EXPLAIN (FORMAT JSON) output,
 * duet.explain's, auto_explain's.  Nothing runs.
 */
Datum
duet_plan_nodes_plan(PG_FUNCTION_ARGS)
{
	return duet_nodes_srf(fcinfo, false);
}

/* ----------------------------------------------------------------
 * Advice
 * ----------------------------------------------------------------
 */

/*
 * The columns of relid that a filter expression, as EXPLAIN prints it,
 * uses: equality comparisons first (they lead an index), then the first
 * column compared otherwise.  The expression is only scanned for names,
 * skipping literals, type names after "::" and function names.  With
 * alias, only names qualified by it count (a join condition names both
 * sides).
 */
static List *
duet_filter_columns(Oid relid, const char *filter, const char *alias)
{
	List	   *eq = NIL;
	List	   *other = NIL;
	const char *p = filter;
	bool		after_cast = false;
	char	   *qualifier = NULL;

	while (*p)
	{
		char	   *name;
		const char *next;

		/* a plan given as jsonb can hold a filter of any length */
		CHECK_FOR_INTERRUPTS();

		if (*p == '\'')
		{
			/* a literal: 'it''s' */
			for (p++; *p; p++)
				if (*p == '\'' && *++p != '\'')
					break;
			continue;
		}
		if (*p == ':' && p[1] == ':')
		{
			after_cast = true;
			p += 2;
			continue;
		}
		if (*p == '"')
		{
			StringInfoData buf;

			initStringInfo(&buf);
			for (p++; *p; p++)
			{
				if (*p == '"')
				{
					if (p[1] != '"')
						break;
					p++;
				}
				appendStringInfoChar(&buf, *p);
			}
			if (*p)
				p++;
			name = buf.data;
		}
		else if (isalpha((unsigned char) *p) || *p == '_')
		{
			const char *start = p;

			while (isalnum((unsigned char) *p) || *p == '_' || *p == '$')
				p++;
			name = pnstrdup(start, p - start);
		}
		else
		{
			if (!isspace((unsigned char) *p))
				after_cast = false;
			qualifier = NULL;
			p++;
			continue;
		}

		/* "alias.column": the column is the last name */
		if (*p == '.')
		{
			qualifier = name;
			p++;
			continue;
		}
		if (alias != NULL && (qualifier == NULL || strcmp(qualifier, alias) != 0))
		{
			qualifier = NULL;
			continue;
		}
		qualifier = NULL;
		next = p;
		while (isspace((unsigned char) *next))
			next++;
		if (after_cast || *next == '(')
		{
			after_cast = false;
			continue;
		}
		if (get_attnum(relid, name) > 0)
		{
			bool		is_eq = next[0] == '=' && next[1] != '>';

			if (list_member(eq, makeString(name)) || list_member(other, makeString(name)))
				continue;
			if (is_eq)
				eq = lappend(eq, makeString(name));
			else
				other = lappend(other, makeString(name));
		}
	}
	if (other != NIL)
		eq = lappend(eq, linitial(other));
	return eq;
}

static char *
duet_column_csv(List *cols)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, cols)
	{
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, quote_identifier(strVal(lfirst(lc))));
	}
	return buf.data;
}

/*
 * The relation a scan node reads, if it can be found.  A plan made without
 * VERBOSE (auto_explain's default) names no schema: the relation is then
 * looked for on the search path, as the statement most likely did.
 */
static Oid
duet_node_relid(DuetNode *n)
{
	Oid			nsp;

	if (n->relname == NULL)
		return InvalidOid;
	if (n->schema == NULL)
		return RelnameGetRelid(n->relname);
	nsp = get_namespace_oid(n->schema, true);
	if (!OidIsValid(nsp))
		return InvalidOid;
	return get_relname_relid(n->relname, nsp);
}

/* The CREATE INDEX that would serve a scan's filter, or NULL. */
static char *
duet_index_suggestion(DuetNode *n)
{
	Oid			relid = duet_node_relid(n);
	List	   *cols;

	if (!OidIsValid(relid) || n->filter == NULL)
		return NULL;
	cols = duet_filter_columns(relid, n->filter, NULL);
	if (cols == NIL)
		return NULL;
	return psprintf("CREATE INDEX ON %s (%s);", duet_node_relation(n),
					duet_column_csv(cols));
}

static bool
duet_is_seqscan(DuetNode *n)
{
	return strcmp(n->node_type, "Seq Scan") == 0 ||
		strcmp(n->node_type, "Parallel Seq Scan") == 0;
}

/* Rows a node gave over all its loops: actual when known, else estimated. */
static double
duet_node_total_rows(DuetNode *n)
{
	if (!isnan(n->actual_rows) && !isnan(n->loops))
		return n->actual_rows * n->loops;
	return n->plan_rows;
}

/* work_mem to suggest for a spill of kb kilobytes on disk: twice, in MB */
static char *
duet_work_mem_suggestion(double kb)
{
	double		mb = ceil(kb * 2.0 / 1024.0);

	return psprintf("SET work_mem = '%.0fMB';", Max(mb, 1.0));
}

typedef struct DuetAdvice
{
	Tuplestorestate *store;
	TupleDesc	desc;
} DuetAdvice;

static void
duet_advise(DuetAdvice *a, const char *severity, DuetNode *n,
			const char *message, const char *suggestion)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, suggestion == NULL};

	values[0] = CStringGetTextDatum(severity);
	values[1] = Int32GetDatum(n->id);
	values[2] = CStringGetTextDatum(message);
	values[3] = suggestion ? CStringGetTextDatum(suggestion) : (Datum) 0;
	tuplestore_putvalues(a->store, a->desc, values, nulls);
}

/* A sequential scan that filters a table of duet.advice_min_rows or more. */
static void
duet_advise_seqscan(DuetAdvice *a, DuetNode *n)
{
	Oid			relid;
	double		rows = -1;

	if (!duet_is_seqscan(n) || n->filter == NULL)
		return;
	relid = duet_node_relid(n);
	if (OidIsValid(relid))
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));

		if (HeapTupleIsValid(tup))
		{
			rows = ((Form_pg_class) GETSTRUCT(tup))->reltuples;
			ReleaseSysCache(tup);
		}
	}
	/* with analyze, what the scan read is known exactly */
	if (!isnan(n->actual_rows) && !isnan(n->loops) && n->loops > 0)
		rows = Max(rows, (n->actual_rows +
						  (isnan(n->removed_by_filter) ? 0 : n->removed_by_filter)));
	if (rows < duet_advice_min_rows)
		return;

	duet_advise(a, "warning", n,
				psprintf("%s on %s reads about %.0f rows to apply the filter %s",
						 n->node_type, duet_node_relation(n), rows, n->filter),
				duet_index_suggestion(n));
}

/* An estimate of rows off by DUET_MISESTIMATE_FACTOR or more. */
static void
duet_advise_misestimate(DuetAdvice *a, DuetNode *n)
{
	double		f = duet_misestimate(n);
	char	   *suggestion = NULL;
	Oid			relid;

	if (isnan(f) || f < DUET_MISESTIMATE_FACTOR ||
		Max(n->actual_rows, n->plan_rows) < DUET_MISESTIMATE_FACTOR)
		return;

	relid = duet_node_relid(n);
	if (OidIsValid(relid))
	{
		List	   *cols = n->filter ? duet_filter_columns(relid, n->filter, NULL) : NIL;

		/* several filtered columns are often correlated */
		if (list_length(cols) > 1)
		{
			StringInfoData name;
			ListCell   *lc;

			initStringInfo(&name);
			appendStringInfoString(&name, n->relname);
			foreach(lc, cols)
				appendStringInfo(&name, "_%s", strVal(lfirst(lc)));
			appendStringInfoString(&name, "_stat");
			suggestion = psprintf("CREATE STATISTICS %s ON %s FROM %s; ANALYZE %s;",
								  quote_qualified_identifier(n->schema, name.data),
								  duet_column_csv(cols), duet_node_relation(n),
								  duet_node_relation(n));
		}
		else
			suggestion = psprintf("ANALYZE %s;", duet_node_relation(n));
	}
	else
		suggestion = pstrdup("ANALYZE the tables below this node; CREATE STATISTICS for correlated columns.");

	duet_advise(a, "warning", n,
				psprintf("%s estimated %.0f rows but got %.0f (%.0fx %s)",
						 n->node_type, n->plan_rows, n->actual_rows, f,
						 n->actual_rows > n->plan_rows ? "more" : "fewer"),
				suggestion);
}

/* A sort, hash or hash aggregate that spilled to disk (an absent size is 0). */
static void
duet_advise_spill(DuetAdvice *a, DuetNode *n)
{
	if (n->sort_space_type != NULL && strcmp(n->sort_space_type, "Disk") == 0)
	{
		double		kb = isnan(n->sort_space_used) ? 0 : n->sort_space_used;

		duet_advise(a, "warning", n,
					psprintf("%s spilled %.0f kB to disk", n->node_type, kb),
					duet_work_mem_suggestion(kb));
	}
	if (!isnan(n->hash_batches) &&
		(n->hash_batches > 1 ||
		 (!isnan(n->orig_hash_batches) && n->orig_hash_batches > 1)))
		duet_advise(a, "warning", n,
					psprintf("%s used %.0f batches: the hash table spilled to disk",
							 n->node_type, n->hash_batches),
					duet_work_mem_suggestion(n->peak_memory * n->hash_batches));
	if ((!isnan(n->hashagg_batches) && n->hashagg_batches > 1) ||
		(!isnan(n->disk_usage) && n->disk_usage > 0))
		duet_advise(a, "warning", n,
					psprintf("%s spilled %.0f kB to disk", n->node_type,
							 isnan(n->disk_usage) ? 0 : n->disk_usage),
					duet_work_mem_suggestion(isnan(n->disk_usage) ? 1024 : n->disk_usage));
}

/* A nested loop whose outer side gives duet.advice_min_rows rows or more. */
static void
duet_advise_nestloop(DuetAdvice *a, DuetNode *n)
{
	DuetNode   *outer = NULL;
	DuetNode   *inner = NULL;
	ListCell   *lc;
	double		rows;
	char	   *suggestion = NULL;

	if (strcmp(n->node_type, "Nested Loop") != 0)
		return;
	foreach(lc, n->children)
	{
		DuetNode   *c = (DuetNode *) lfirst(lc);

		if (c->relationship && strcmp(c->relationship, "Outer") == 0)
			outer = c;
		else if (c->relationship && strcmp(c->relationship, "Inner") == 0)
			inner = c;
	}
	if (outer == NULL)
		return;
	rows = duet_node_total_rows(outer);
	if (isnan(rows) || rows < duet_advice_min_rows)
		return;

	/*
	 * The inner side runs once per outer row: an index on its join columns
	 * (then its filter's) helps most.
	 */
	while (inner != NULL && !duet_is_seqscan(inner) && list_length(inner->children) == 1)
		inner = (DuetNode *) linitial(inner->children);
	if (inner != NULL && duet_is_seqscan(inner) && OidIsValid(duet_node_relid(inner)))
	{
		Oid			relid = duet_node_relid(inner);
		List	   *cols = NIL;

		if (n->join_filter != NULL && inner->alias != NULL)
			cols = duet_filter_columns(relid, n->join_filter, inner->alias);
		if (inner->filter != NULL)
			cols = list_concat_unique(cols, duet_filter_columns(relid, inner->filter, NULL));
		if (cols != NIL)
			suggestion = psprintf("CREATE INDEX ON %s (%s);", duet_node_relation(inner),
								  duet_column_csv(cols));
	}
	if (suggestion == NULL)
		suggestion = pstrdup("Check the join's row estimates (ANALYZE), or allow a hash join (enable_hashjoin, work_mem).");

	duet_advise(a, "warning", n,
				psprintf("Nested Loop runs its inner side for each of %.0f outer rows", rows),
				suggestion);
}

/*
 * Advice rows (severity, node, message, suggestion) drawn from the plan;
 * node is the id that duet.plan_nodes gives.  Misestimates and spills are
 * only known with analyze.
 */
static Datum
duet_advice_srf(FunctionCallInfo fcinfo, bool from_query)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	DuetAdvice	a;
	List	   *nodes;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;
	nodes = duet_nodes_for_args(fcinfo, from_query);
	a.store = rsinfo->setResult;
	a.desc = rsinfo->setDesc;

	foreach(lc, nodes)
	{
		DuetNode   *n = (DuetNode *) lfirst(lc);

		duet_advise_seqscan(&a, n);
		duet_advise_misestimate(&a, n);
		duet_advise_spill(&a, n);
		duet_advise_nestloop(&a, n);
	}
	return (Datum) 0;
}

/* duet.plan_advice(query, analyze, params) returns setof record */
Datum
duet_plan_advice(PG_FUNCTION_ARGS)
{
	return duet_advice_srf(fcinfo, true);
}

/*
 * duet.plan_advice(plan jsonb) returns setof record
 *
 * The same advice for a plan made elsewhere; nothing runs.
 */
Datum
duet_plan_advice_plan(PG_FUNCTION_ARGS)
{
	return duet_advice_srf(fcinfo, false);
}
