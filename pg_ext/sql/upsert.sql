-- upsert: duet.upsert, duet.upsert_many and duet.get_or_create (upsert.c)

CREATE TYPE duet.upsert_result AS ("row" jsonb, inserted boolean);
COMMENT ON TYPE duet.upsert_result IS
'the row after duet.upsert, and whether it was inserted (false: updated or left as it was)';

CREATE TYPE duet.get_or_create_result AS ("row" jsonb, created boolean);
COMMENT ON TYPE duet.get_or_create_result IS
'the row found or created by duet.get_or_create, and whether it was created';

-- Internal: upsert statements call it in their ON CONFLICT DO UPDATE ...
-- WHERE clause to count the rows they update; it returns its first argument.
CREATE FUNCTION duet._upsert_updated(changed boolean, token bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'duet_upsert_updated'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION duet._upsert_updated(boolean, bigint) IS
'internal to duet.upsert: tells updated rows from inserted ones';

-- Not STRICT: a null conflict_columns or update_columns means "the default".
CREATE FUNCTION duet.upsert(tbl regclass, "row" jsonb,
                            conflict_columns text[] DEFAULT NULL,
                            update_columns text[] DEFAULT NULL,
                            only_if_changed boolean DEFAULT false)
RETURNS duet.upsert_result
AS 'MODULE_PATHNAME', 'duet_upsert'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION duet.upsert(regclass, jsonb, text[], text[], boolean) IS
'insert a row given as a jsonb object, or update the row it conflicts with';

-- return_rows => false leaves "row" null, for loads that need no rows back.
CREATE FUNCTION duet.upsert_many(tbl regclass, "rows" jsonb,
                                 conflict_columns text[] DEFAULT NULL,
                                 update_columns text[] DEFAULT NULL,
                                 only_if_changed boolean DEFAULT false,
                                 return_rows boolean DEFAULT true)
RETURNS TABLE ("ordinality" integer, "row" jsonb, inserted boolean)
AS 'MODULE_PATHNAME', 'duet_upsert_many'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER ROWS 1000;
COMMENT ON FUNCTION duet.upsert_many(regclass, jsonb, text[], text[], boolean, boolean) IS
'upsert every object of a jsonb array; one result per input row, in input order';

CREATE FUNCTION duet.get_or_create(tbl regclass, lookup jsonb,
                                   defaults jsonb DEFAULT '{}')
RETURNS duet.get_or_create_result
AS 'MODULE_PATHNAME', 'duet_get_or_create'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION duet.get_or_create(regclass, jsonb, jsonb) IS
'return the row matching lookup, or insert lookup plus defaults; safe under concurrency';
