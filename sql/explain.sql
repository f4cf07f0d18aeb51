--
-- duet.explain and duet.plan_nodes
--
-- Costs and timings vary between runs: the tests show node types, relations
-- and booleans about the numbers, never the numbers themselves.
--
CREATE SCHEMA duet_exp;
SET search_path = duet_exp, public;
SET max_parallel_workers_per_gather = 0;

CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, total numeric NOT NULL);
INSERT INTO orders SELECT g, g % 50, g * 1.5 FROM generate_series(1, 1000) g;
CREATE INDEX orders_customer ON orders (customer);
ANALYZE orders;

-- the plan as EXPLAIN (FORMAT JSON) gives it
SELECT jsonb_typeof(p) AS type, jsonb_array_length(p) AS plans,
       p->0->'Plan'->>'Node Type' AS node, p->0->'Plan'->>'Relation Name' AS rel,
       p->0->'Plan' ? 'Actual Rows' AS has_actual, p->0 ? 'Execution Time' AS has_time
  FROM duet.explain('SELECT * FROM orders') p;
SELECT p->0->'Plan'->>'Node Type' AS node, p->0->'Plan'->>'Index Name' AS index,
       (p->0->'Plan'->>'Actual Rows')::int AS actual_rows,
       p->0 ? 'Execution Time' AS has_time
  FROM duet.explain('SELECT * FROM orders WHERE id = 7', true) p;
-- the same plan as EXPLAIN itself
DO $$
DECLARE
    mine jsonb;
    theirs json;
BEGIN
    mine := duet.explain('SELECT count(*) FROM orders WHERE customer = 3');
    EXECUTE 'EXPLAIN (FORMAT JSON) SELECT count(*) FROM orders WHERE customer = 3' INTO theirs;
    RAISE NOTICE 'same plan as EXPLAIN: %', mine = theirs::jsonb;
END $$;
-- also with quotes, backslashes, non-ASCII and control characters in the
-- plan's text (EXPLAIN's JSON is read straight into jsonb, \u escapes and
-- very deep plans through jsonb_in)
DO $$
DECLARE
    q text;
    theirs json;
BEGIN
    SET LOCAL join_collapse_limit = 1;
    FOREACH q IN ARRAY ARRAY[
        $q$SELECT * FROM orders WHERE customer::text = 'a"b\c' || E'\t' || 'é€' || E'\x01'$q$,
        $q$SELECT * FROM orders WHERE customer::text = 'a"b\c' || E'\t\n' || 'é€'$q$,
        'SELECT 1 FROM orders o0' || (SELECT string_agg(format(' JOIN orders o%s ON o%s.id = o%s.id', i, i, i - 1), '')
                                       FROM generate_series(1, 35) i)]
    LOOP
        EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO theirs;
        RAISE NOTICE 'same plan as EXPLAIN: %', duet.explain(q) = theirs::jsonb;
    END LOOP;
END $$;

-- a node of 17 keys or more (jsonb keeps an offset every 32 entries): the
-- jsonb read from EXPLAIN's text must equal what jsonb_in builds from it
SELECT p = p::text::jsonb AS reads_back, p->0->'Plan'->>'Node Type' AS node,
       (SELECT count(*) FROM jsonb_object_keys(p->0->'Plan')) >= 17 AS many_keys
  FROM duet.explain('SELECT * FROM orders WHERE id > 990 AND customer > 0', true) p;

-- parameters: types come from the query, values are bound
SELECT p->0->'Plan'->>'Node Type' AS node, (p->0->'Plan'->>'Actual Rows')::int AS actual_rows
  FROM duet.explain('SELECT * FROM orders WHERE id = $1', true, '{42}') p;
SELECT (p->0->'Plan'->>'Actual Rows')::int AS actual_rows
  FROM duet.explain('SELECT * FROM orders WHERE customer = $1 AND total > $2', true,
                    ARRAY['3', '100.5']) p;
SELECT (p->0->'Plan'->>'Actual Rows')::int AS actual_rows
  FROM duet.explain('SELECT $1 AS untyped, $2::int AS typed', true, ARRAY['a', NULL]) p;
SELECT (p->0->'Plan'->>'Actual Rows')::int AS actual_rows
  FROM duet.explain('SELECT * FROM orders WHERE id = $1', true, '{}') p;
-- a parameter the query never uses is text, not an internal error
SELECT (p->0->'Plan'->>'Actual Rows')::int AS actual_rows
  FROM duet.explain('SELECT $2::int AS second', true, '{unused,2}') p;

-- with analyze, a data-changing statement changes nothing
CREATE TABLE scratch (id int PRIMARY KEY, customer int NOT NULL, total numeric NOT NULL);
INSERT INTO scratch SELECT * FROM orders;
SELECT count(*), sum(total) FROM scratch;
SELECT p->0->'Plan'->>'Node Type' AS node, p->0->'Plan'->>'Operation' AS operation,
       (p->0->'Plan'->'Plans'->0->>'Actual Rows')::int AS rows_deleted
  FROM duet.explain('DELETE FROM scratch WHERE customer < 10', true) p;
SELECT p->0->'Plan'->>'Operation' AS operation
  FROM duet.explain('UPDATE scratch SET total = 0 RETURNING id', true) p;
SELECT p->0->'Plan'->>'Operation' AS operation
  FROM duet.explain('INSERT INTO scratch SELECT id + 1000, customer, total FROM scratch', true) p;
SELECT p->0->'Plan'->>'Node Type' AS node
  FROM duet.explain('WITH d AS (DELETE FROM scratch RETURNING *) SELECT count(*) FROM d', true) p;
SELECT p->0->'Plan'->>'Node Type' AS node
  FROM duet.explain('CREATE TABLE scratch_copy AS SELECT * FROM scratch', true) p;
SELECT count(*), sum(total) FROM scratch;
SELECT to_regclass('scratch_copy') IS NULL AS no_copy;
-- ... also inside a transaction, which goes on afterwards
BEGIN;
INSERT INTO scratch VALUES (5000, 1, 1);
SELECT p->0->'Plan'->>'Operation' AS operation
  FROM duet.explain('DELETE FROM scratch', true) p;
SELECT count(*) FROM scratch;
ROLLBACK;
-- without analyze nothing runs at all
SELECT p->0->'Plan'->>'Operation' AS operation
  FROM duet.explain('DELETE FROM scratch') p;
SELECT count(*) FROM scratch;
-- an error while analyzing leaves the caller's subtransactions intact
DO $$
BEGIN
    PERFORM duet.explain('SELECT 1 / (id - id) FROM orders', true);
EXCEPTION WHEN division_by_zero THEN
    RAISE NOTICE 'caught: %', SQLERRM;
END $$;
SELECT count(*) FROM orders;

--
-- duet.plan_nodes
--
CREATE TABLE customers (id int PRIMARY KEY, name text);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(0, 49) g;
ANALYZE customers;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SELECT id, parent, node_type, relation, index_name,
       startup_cost >= 0 AS startup, total_cost >= startup_cost AS total,
       plan_rows > 0 AS estimated, actual_rows IS NULL AS no_actual,
       loops IS NULL AS no_loops, time_ms IS NULL AS no_time, misestimate IS NULL AS no_factor
  FROM duet.plan_nodes('SELECT c.name, o.total FROM customers c JOIN orders o ON o.customer = c.id
                        WHERE c.id = 3 ORDER BY o.total')
 ORDER BY id;
SELECT id, parent, node_type, relation, index_name, actual_rows, loops,
       time_ms >= 0 AS timed, misestimate >= 1 AS factor
  FROM duet.plan_nodes('SELECT c.name, o.total FROM customers c JOIN orders o ON o.customer = c.id
                        WHERE c.id = 3 ORDER BY o.total', true)
 ORDER BY id;
RESET enable_hashjoin;
RESET enable_mergejoin;
-- node names as EXPLAIN's text format prints them
SELECT id, parent, node_type, relation
  FROM duet.plan_nodes('INSERT INTO customers SELECT customer + 100, max(total)::text
                        FROM orders GROUP BY customer')
 ORDER BY id;
SELECT id, node_type, actual_rows, misestimate
  FROM duet.plan_nodes('SELECT * FROM orders WHERE id = $1', true, '{5}') ORDER BY id;
SELECT count(*) FROM customers;

--
-- duet.plan_nodes(jsonb): the same rows from a plan made elsewhere
--
CREATE FUNCTION explain_json(q text, opts text DEFAULT 'VERBOSE') RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    p json;
BEGIN
    EXECUTE format('EXPLAIN (%s, FORMAT JSON) %s', opts, q) INTO p;
    RETURN p;
END $$;
-- a plan is run and read once; costs are the same from one EXPLAIN to the next
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SELECT (SELECT array_agg(n ORDER BY n.id)
          FROM duet.plan_nodes('SELECT c.name, o.total FROM customers c JOIN orders o
                                ON o.customer = c.id WHERE c.id = 3 ORDER BY o.total') n)
     = (SELECT array_agg(n ORDER BY n.id)
          FROM duet.plan_nodes(explain_json('SELECT c.name, o.total FROM customers c JOIN orders o
                                ON o.customer = c.id WHERE c.id = 3 ORDER BY o.total')) n)
       AS same_as_explain,
       (SELECT array_agg(n ORDER BY n.id)
          FROM duet.plan_nodes('SELECT * FROM orders WHERE id = $1', false, '{5}') n)
     = (SELECT array_agg(n ORDER BY n.id)
          FROM duet.plan_nodes(duet.explain('SELECT * FROM orders WHERE id = $1', false, '{5}',
                                            verbose => true)) n)
       AS same_as_duet_explain;
-- with analyze: the same nodes and actual rows (times vary)
SELECT (SELECT array_agg((id, parent, node_type, relation, index_name, plan_rows, actual_rows, loops)
                         ORDER BY id)
          FROM duet.plan_nodes('SELECT c.name, o.total FROM customers c JOIN orders o
                                ON o.customer = c.id WHERE c.id = 3 ORDER BY o.total', true))
     = (SELECT array_agg((id, parent, node_type, relation, index_name, plan_rows, actual_rows, loops)
                         ORDER BY id)
          FROM duet.plan_nodes(explain_json('SELECT c.name, o.total FROM customers c JOIN orders o
                                ON o.customer = c.id WHERE c.id = 3 ORDER BY o.total',
                                'ANALYZE, VERBOSE')))
       AS same_with_analyze;
RESET enable_hashjoin;
RESET enable_mergejoin;
-- without VERBOSE, relations are not schema-qualified
SELECT id, parent, node_type, relation, index_name, actual_rows IS NULL AS no_actual
  FROM duet.plan_nodes(explain_json('SELECT * FROM orders WHERE id = 5', 'COSTS OFF'));
-- through a psql variable, cast to jsonb: a plain literal is a query
SELECT explain_json('SELECT count(*) FROM orders', 'ANALYZE') AS plan \gset
SELECT id, parent, node_type, relation, actual_rows, loops FROM duet.plan_nodes(:'plan'::jsonb);
-- the object that holds "Plan" (as auto_explain logs it), several statements
-- (a rule adds one), an empty array (a statement that rewrites to nothing)
SELECT id, parent, node_type, relation, plan_rows
  FROM duet.plan_nodes('{"Query Text": "SELECT 1", "Plan": {"Node Type": "Result", "Plan Rows": 1}}'::jsonb);
SELECT id, parent, node_type, relation
  FROM duet.plan_nodes('[{"Plan": {"Node Type": "ModifyTable", "Operation": "Insert",
                                   "Relation Name": "a", "Schema": "s",
                                   "Plans": [{"Node Type": "Result"}]}},
                         {"Plan": {"Node Type": "Aggregate", "Strategy": "Hashed",
                                   "Parallel Aware": true}}]'::jsonb);
SELECT count(*) AS nodes FROM duet.plan_nodes('[]'::jsonb);
-- a utility statement a rule adds is a bare string in EXPLAIN's array
CREATE TABLE notified (id int);
CREATE RULE notify_insert AS ON INSERT TO notified DO ALSO NOTIFY duet_exp_channel;
SELECT jsonb_array_length(explain_json('INSERT INTO notified VALUES (1)', 'COSTS OFF')) AS statements;
SELECT id, parent, node_type, relation
  FROM duet.plan_nodes('INSERT INTO notified VALUES (1)');
SELECT count(*) AS advice FROM duet.plan_advice('INSERT INTO notified VALUES (1)', true);
SELECT count(*) AS rows_left FROM notified;
DROP TABLE notified;
SELECT count(*) AS nodes FROM duet.plan_nodes(NULL::jsonb);
-- figures, names and flags of the wrong type are taken as absent; numbers
-- beyond float8 are infinite
SELECT id, parent, node_type, relation, index_name, startup_cost, total_cost,
       plan_rows, actual_rows, loops, time_ms, misestimate
  FROM duet.plan_nodes('{"Plan": {"Node Type": "Seq Scan", "Relation Name": 7, "Schema": ["s"],
                                  "Index Name": null, "Parallel Aware": "yes",
                                  "Startup Cost": "abc", "Total Cost": 1e400, "Plan Rows": {},
                                  "Actual Rows": true, "Actual Loops": 2,
                                  "Actual Total Time": "1", "Strategy": 5}}'::jsonb);
-- a deep plan is read, until the stack runs out
CREATE TABLE deep_plan AS
SELECT ('{"Plan": ' || repeat('{"Node Type": "Result", "Plans": [', 2000) ||
        '{"Node Type": "Result"}' || repeat(']}', 2000) || '}')::jsonb AS plan;
SELECT count(*) AS nodes, max(parent) AS deepest FROM deep_plan, duet.plan_nodes(plan);
-- and a wide one
SELECT count(*) AS nodes, max(plan_rows) AS max_rows
  FROM duet.plan_nodes(jsonb_build_object('Plan', jsonb_build_object(
           'Node Type', 'Append',
           'Plans', (SELECT jsonb_agg(jsonb_build_object('Node Type', 'Result', 'Plan Rows', g))
                       FROM generate_series(1, 100000) g))));

-- overloads: a quoted literal or an untyped parameter is a query, as is text
SELECT node_type FROM duet.plan_nodes('SELECT 1');
SELECT node_type, actual_rows FROM duet.plan_nodes('SELECT 1', true);
SELECT node_type FROM duet.plan_nodes('SELECT 1'::varchar);
SELECT node_type FROM duet.plan_nodes(query => 'SELECT 1');
SELECT node_type FROM duet.plan_nodes(plan => '[{"Plan": {"Node Type": "Result"}}]');
PREPARE untyped AS SELECT node_type FROM duet.plan_nodes($1);
SELECT parameter_types FROM pg_prepared_statements WHERE name = 'untyped';
EXECUTE untyped('SELECT 1');
DEALLOCATE untyped;
PREPARE typed AS SELECT node_type FROM duet.plan_nodes($1::jsonb);
EXECUTE typed('[{"Plan": {"Node Type": "Result"}}]');
DEALLOCATE typed;
SELECT p.oid::regprocedure AS function, provolatile, proparallel, proisstrict, prosecdef
  FROM pg_proc p
 WHERE pronamespace = 'duet'::regnamespace
   AND proname IN ('explain', 'plan_nodes', 'plan_advice')
 ORDER BY 1::text COLLATE "C";

--
-- errors
--
\set VERBOSITY default
SELECT duet.explain('SELECT 1; SELECT 2');
SELECT duet.explain('');
SELECT duet.explain('VACUUM orders');
SELECT duet.explain('EXPLAIN SELECT 1');
SELECT duet.explain('SELEC 1');
SELECT duet.explain('SELECT * FROM no_such_table');
SELECT duet.explain('SELECT * FROM orders WHERE id = $1', false, '{1,2}');
SELECT duet.explain('SELECT * FROM orders WHERE id = $1');
SELECT duet.explain('SELECT * FROM orders WHERE id = $1', false, '{abc}');
SELECT * FROM duet.plan_nodes('DROP TABLE orders');
-- a plan that is not one
SELECT * FROM duet.plan_nodes('5'::jsonb);
SELECT * FROM duet.plan_nodes('"SELECT 1"'::jsonb);
SELECT * FROM duet.plan_nodes('null'::jsonb);
SELECT * FROM duet.plan_nodes('{}'::jsonb);
SELECT * FROM duet.plan_nodes('[{"Plan": {"Node Type": "Result"}}, 1]'::jsonb);
SELECT * FROM duet.plan_nodes('[[]]'::jsonb);
SELECT * FROM duet.plan_nodes('[{"Planning Time": 1}]'::jsonb);
SELECT * FROM duet.plan_nodes('[{"Plan": "Seq Scan"}]'::jsonb);
SELECT * FROM duet.plan_nodes('{"Plan": [{"Node Type": "Result"}]}'::jsonb);
SELECT * FROM duet.plan_nodes('{"Plan": {}}'::jsonb);
SELECT * FROM duet.plan_nodes('{"Plan": {"Node Type": 5}}'::jsonb);
SELECT * FROM duet.plan_nodes('{"Plan": {"Node Type": null}}'::jsonb);
SELECT * FROM duet.plan_nodes('{"Plan": {"Node Type": "Result", "Plans": "x"}}'::jsonb);
SELECT * FROM duet.plan_nodes('{"Plan": {"Node Type": "Result", "Plans": {"Node Type": "Result"}}}'::jsonb);
SELECT * FROM duet.plan_nodes('{"Plan": {"Node Type": "Result", "Plans": [{"Node Type": "Result"}, [1]]}}'::jsonb);
SELECT * FROM duet.plan_nodes('{"Plan": {"Node Type": "Result", "Plans": [{"Node Type": "Result"}, {"Plans": []}]}}'::jsonb);
SELECT * FROM duet.plan_advice('[{"Plan": {"Node Type": "Result", "Plans": [true]}}]'::jsonb);
-- the query versions take a literal: it is SQL, not a plan
SELECT * FROM duet.plan_nodes('[{"Plan": {"Node Type": "Result"}}]');
SET max_stack_depth = '100kB';
SELECT count(*) FROM deep_plan, duet.plan_nodes(plan);
RESET max_stack_depth;
SELECT duet.explain(NULL) IS NULL AS null_query;
SELECT count(*) FROM duet.plan_nodes(NULL);
-- the caller's privileges apply, with analyze or without
CREATE ROLE duet_exp_nobody;
GRANT USAGE ON SCHEMA duet_exp TO duet_exp_nobody;
SET ROLE duet_exp_nobody;
SELECT duet.explain('SELECT * FROM orders');
SELECT duet.explain('DELETE FROM orders', true);
RESET ROLE;

RESET search_path;
RESET max_parallel_workers_per_gather;
DROP SCHEMA duet_exp CASCADE;
DROP ROLE duet_exp_nobody;
