-- explain: duet.explain, duet.plan_nodes and duet.plan_advice (explain.c)

-- Not STRICT: a null analyze or verbose means false and a null params means none.
-- VOLATILE: with analyze the query runs (and is rolled back).
CREATE FUNCTION duet.explain(query text, "analyze" boolean DEFAULT false,
                             params text[] DEFAULT NULL, verbose boolean DEFAULT false)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'duet_explain'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION duet.explain(text, boolean, text[], boolean) IS
'EXPLAIN (FORMAT JSON) as jsonb; with analyze the statement runs in a subtransaction that is rolled back';

CREATE FUNCTION duet.plan_nodes(query text, "analyze" boolean DEFAULT false,
                                params text[] DEFAULT NULL)
RETURNS TABLE (id integer, parent integer, node_type text, relation text,
               index_name text, startup_cost float8, total_cost float8,
               plan_rows float8, actual_rows float8, loops float8,
               time_ms float8, misestimate float8)
AS 'MODULE_PATHNAME', 'duet_plan_nodes'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION duet.plan_nodes(text, boolean, text[]) IS
'one row per plan node: estimated and actual rows, cost, time and misestimate factor';

CREATE FUNCTION duet.plan_advice(query text, "analyze" boolean DEFAULT false,
                                 params text[] DEFAULT NULL)
RETURNS TABLE (severity text, node integer, message text, suggestion text)
AS 'MODULE_PATHNAME', 'duet_plan_advice'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY INVOKER;
COMMENT ON FUNCTION duet.plan_advice(text, boolean, text[]) IS
'advice drawn from a plan: sequential scans on large tables, misestimates, spills, large nested loops';

-- The same for a plan made elsewhere (EXPLAIN (FORMAT JSON), duet.explain,
-- auto_explain): nothing runs.  STABLE, not IMMUTABLE: the advice reads the
-- catalogs and duet.advice_min_rows.  A quoted literal or an untyped
-- parameter still picks the query versions above (text is the preferred
-- type for unknown).
CREATE FUNCTION duet.plan_nodes(plan jsonb)
RETURNS TABLE (id integer, parent integer, node_type text, relation text,
               index_name text, startup_cost float8, total_cost float8,
               plan_rows float8, actual_rows float8, loops float8,
               time_ms float8, misestimate float8)
AS 'MODULE_PATHNAME', 'duet_plan_nodes_plan'
LANGUAGE C STRICT STABLE PARALLEL SAFE SECURITY INVOKER;
COMMENT ON FUNCTION duet.plan_nodes(jsonb) IS
'one row per node of an EXPLAIN (FORMAT JSON) plan: estimated and actual rows, cost, time and misestimate factor';

CREATE FUNCTION duet.plan_advice(plan jsonb)
RETURNS TABLE (severity text, node integer, message text, suggestion text)
AS 'MODULE_PATHNAME', 'duet_plan_advice_plan'
LANGUAGE C STRICT STABLE PARALLEL SAFE SECURITY INVOKER;
COMMENT ON FUNCTION duet.plan_advice(jsonb) IS
'advice drawn from an EXPLAIN (FORMAT JSON) plan: sequential scans on large tables, misestimates, spills, large nested loops';
