/*-------------------------------------------------------------------------
 *
 * upsert_errors.c
 *	  Error reports shared by duet.upsert, duet.upsert_many and
 *	  duet.get_or_create.
 *
 * Errors about a table name its columns or unique keys in a hint, so that a
 * caller who misspelled a column or picked a column set that no unique key
 * matches sees what the table offers.  Each function here reports an error
 * and does not return, except the list builders used in those messages.
 *
 * pg_ext/upsert_errors.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "upsert_int.h"

/* "a, b, c": the table's columns, for hints. */
char *
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

/* "(id), (email)": the table's unique keys, for messages. */
char *
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

void
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

void
duet_not_object(const char *what, const char *got)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s must be a JSON object", what),
			 errdetail("Got a JSON %s.", got)));
}

/*
 * A conflict kept happening with a row that the next statement could not
 * see: hidden by row-level security, or deleted again and again.
 */
void
duet_invisible_conflict(DuetRel *rel, int attempts)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("conflicting row in relation \"%s\" is not visible", rel->relname),
			 errdetail("The insert conflicted %d times with a row that could not be read afterwards.",
					   attempts),
			 errhint("Row-level security may hide the row, or concurrent sessions keep deleting it.")));
}
