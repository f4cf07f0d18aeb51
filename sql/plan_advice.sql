--
-- duet.plan_advice
--
-- Messages quote sizes from the plan; where they depend on memory or disk
-- use, digits are masked so that the output stays stable.
--
CREATE SCHEMA duet_adv;
SET search_path = duet_adv, public;
SET max_parallel_workers_per_gather = 0;
SET jit = off;

-- a and b are equal in every row: the planner assumes them independent
CREATE TABLE events (id int PRIMARY KEY, a int, b int, kind text, payload text);
INSERT INTO events
    SELECT g, g % 100, g % 100, 'k' || (g % 7), repeat('x', 20) || g
      FROM generate_series(1, 20000) g;
CREATE TABLE "Odd Events" ("Event Id" int, "select" text);
INSERT INTO "Odd Events" SELECT g, 's' || (g % 10) FROM generate_series(1, 20000) g;
CREATE TABLE small (id int, v text);
INSERT INTO small SELECT g, 'v' || g FROM generate_series(1, 100) g;
ANALYZE events, "Odd Events", small;

SHOW duet.advice_min_rows;

-- a sequential scan filtering a large table, and the index that would help:
-- equality columns first, then one range column
SELECT severity, node, message, suggestion
  FROM duet.plan_advice('SELECT * FROM events WHERE kind = ''k1'' AND id > 5')
 ORDER BY node, message;
SELECT severity, node, message, suggestion
  FROM duet.plan_advice('SELECT * FROM events WHERE payload LIKE ''x%'' AND kind = $1', false, '{k3}')
 ORDER BY node, message;
-- identifiers in the suggestion are quoted
SELECT severity, node, message, suggestion
  FROM duet.plan_advice('SELECT * FROM "Odd Events" WHERE "select" = ''s1'' AND "Event Id" < 100')
 ORDER BY node, message;
-- small tables, and filters an index already serves, are fine
SELECT count(*) AS advice FROM duet.plan_advice('SELECT * FROM small WHERE v = ''v1''');
SELECT count(*) AS advice FROM duet.plan_advice('SELECT * FROM events WHERE id = 5');
SELECT count(*) AS advice FROM duet.plan_advice('SELECT * FROM events');
-- the threshold is a per-session setting
SET duet.advice_min_rows = 50;
SELECT severity, node, suggestion FROM duet.plan_advice('SELECT * FROM small WHERE v = ''v1''');
SET duet.advice_min_rows = 1000000;
SELECT count(*) AS advice FROM duet.plan_advice('SELECT * FROM events WHERE kind = ''k1''');
RESET duet.advice_min_rows;
-- the suggested index removes the advice
CREATE INDEX ON events (kind, id);
SELECT count(*) AS advice FROM duet.plan_advice('SELECT * FROM events WHERE kind = ''k1'' AND id > 19990');
DROP INDEX events_kind_id_idx;

-- a misestimate of 10x or more (only known with analyze)
SELECT severity, node, message, suggestion
  FROM duet.plan_advice('SELECT * FROM events WHERE a = 1 AND b = 1', true)
 ORDER BY node, message;
SELECT count(*) AS without_analyze
  FROM duet.plan_advice('SELECT * FROM events WHERE a = 1 AND b = 1')
 WHERE message LIKE '%estimated%';
-- the suggested statistics fix the estimate
CREATE STATISTICS duet_adv.events_a_b_stat (dependencies) ON a, b FROM duet_adv.events;
ANALYZE duet_adv.events;
SELECT count(*) AS misestimates
  FROM duet.plan_advice('SELECT * FROM events WHERE a = 1 AND b = 1', true)
 WHERE message LIKE '%estimated%';

-- sorts, hashes and hash aggregates that spill to disk
SET work_mem = '64kB';
SELECT severity, node, regexp_replace(message, '\d+', 'N', 'g') AS message,
       regexp_replace(suggestion, '\d+', 'N', 'g') AS suggestion
  FROM duet.plan_advice('SELECT * FROM events ORDER BY payload', true)
 ORDER BY node, message;
SET enable_mergejoin = off;
SELECT severity, node, regexp_replace(message, '\d+', 'N', 'g') AS message,
       regexp_replace(suggestion, '\d+', 'N', 'g') AS suggestion
  FROM duet.plan_advice('SELECT count(*) FROM events e1 JOIN events e2 ON e1.payload = e2.payload', true)
 ORDER BY node, message;
SET enable_sort = off;
SELECT severity, node, regexp_replace(message, '\d+', 'N', 'g') AS message,
       regexp_replace(suggestion, '\d+', 'N', 'g') AS suggestion
  FROM duet.plan_advice('SELECT payload, count(*) FROM events GROUP BY payload', true)
 ORDER BY node, message;
RESET enable_sort;
RESET enable_mergejoin;
RESET work_mem;
SELECT count(*) AS in_memory FROM duet.plan_advice('SELECT * FROM events ORDER BY payload', true);

-- a nested loop over a large outer side: index the inner side's join column
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SELECT severity, node, message, suggestion
  FROM duet.plan_advice('SELECT * FROM events e JOIN small s ON s.id = e.a')
 ORDER BY node, message;
SELECT severity, node, message, suggestion
  FROM duet.plan_advice('SELECT * FROM events e JOIN small s ON s.id = e.a', true)
 ORDER BY node, message;
-- a small outer side is fine
SELECT count(*) AS advice
  FROM duet.plan_advice('SELECT * FROM small s JOIN events e ON e.id = s.id');
RESET enable_hashjoin;
RESET enable_mergejoin;

-- advice refers to the nodes of duet.plan_nodes
SELECT a.node, n.node_type, n.relation
  FROM duet.plan_advice('SELECT * FROM events WHERE kind = ''k1''') a
  JOIN duet.plan_nodes('SELECT * FROM events WHERE kind = ''k1''') n ON n.id = a.node;

-- duet.plan_advice(jsonb): the same advice from a plan made elsewhere
CREATE FUNCTION explain_json(q text, opts text DEFAULT 'VERBOSE') RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    p json;
BEGIN
    EXECUTE format('EXPLAIN (%s, FORMAT JSON) %s', opts, q) INTO p;
    RETURN p;
END $$;
-- the query's advice, and that of its EXPLAIN (VERBOSE) plan (the sizes of
-- spills are masked: they can vary from run to run)
CREATE FUNCTION same_advice(q text, with_analyze boolean) RETURNS boolean
LANGUAGE sql AS $$
    SELECT (SELECT array_agg((severity, node, regexp_replace(message, '\d+', 'N', 'g'),
                              regexp_replace(suggestion, '\d+', 'N', 'g')) ORDER BY node, message)
              FROM duet.plan_advice(q, with_analyze))
        IS NOT DISTINCT FROM
           (SELECT array_agg((severity, node, regexp_replace(message, '\d+', 'N', 'g'),
                              regexp_replace(suggestion, '\d+', 'N', 'g')) ORDER BY node, message)
              FROM duet.plan_advice(explain_json(q, CASE WHEN with_analyze THEN 'ANALYZE, VERBOSE'
                                                          ELSE 'VERBOSE' END)))
$$;
DROP STATISTICS duet_adv.events_a_b_stat;
ANALYZE duet_adv.events;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SELECT q, with_analyze, (SELECT count(*) FROM duet.plan_advice(q, with_analyze)) AS advice,
       same_advice(q, with_analyze)
  FROM (VALUES ('SELECT * FROM events WHERE kind = ''k1'' AND id > 5', false),
               ('SELECT * FROM "Odd Events" WHERE "select" = ''s1'' AND "Event Id" < 100', false),
               ('SELECT * FROM events WHERE a = 1 AND b = 1', true),
               ('SELECT * FROM events e JOIN small s ON s.id = e.a', false),
               ('SELECT * FROM events e JOIN small s ON s.id = e.a', true),
               ('SELECT * FROM small WHERE v = ''v1''', false)) v(q, with_analyze);
RESET enable_hashjoin;
SET work_mem = '64kB';
SELECT same_advice('SELECT * FROM events ORDER BY payload', true) AS sort_spill,
       (SELECT count(*) FROM duet.plan_advice('SELECT * FROM events ORDER BY payload', true))
           AS advice;
SELECT same_advice('SELECT count(*) FROM events e1 JOIN events e2 ON e1.payload = e2.payload',
                   true) AS hash_spill,
       (SELECT count(*) FROM duet.plan_advice('SELECT count(*) FROM events e1 JOIN events e2
                                               ON e1.payload = e2.payload', true)) AS advice;
RESET enable_mergejoin;
SET enable_sort = off;
SELECT same_advice('SELECT payload, count(*) FROM events GROUP BY payload', true) AS hashagg_spill,
       (SELECT count(*) FROM duet.plan_advice('SELECT payload, count(*) FROM events
                                               GROUP BY payload', true)) AS advice;
RESET enable_sort;
RESET work_mem;
-- duet.advice_min_rows applies to a given plan too
SET duet.advice_min_rows = 50;
SELECT severity, node, suggestion
  FROM duet.plan_advice(explain_json('SELECT * FROM small WHERE v = ''v1'''));
RESET duet.advice_min_rows;
-- without VERBOSE (auto_explain's default), relations are found on the search path
SELECT severity, node, message, suggestion
  FROM duet.plan_advice(explain_json('SELECT * FROM events WHERE kind = ''k1''', 'COSTS OFF'));
-- a hand-made plan: absent or ill-typed figures never break the advice
SELECT severity, node, message, suggestion
  FROM duet.plan_advice('[{"Plan": {"Node Type": "Nested Loop", "Plan Rows": "many",
      "Plans": [{"Node Type": "Seq Scan", "Parent Relationship": "Outer", "Plan Rows": 1e400},
                {"Node Type": "Sort", "Parent Relationship": "Inner",
                 "Sort Space Type": "Disk", "Sort Space Used": null,
                 "Hash Batches": 4, "Peak Memory Usage": "x", "Actual Rows": 1,
                 "Actual Loops": 1, "Plan Rows": 5000},
                {"Node Type": "Seq Scan", "Schema": "duet_adv", "Relation Name": "no_such",
                 "Filter": "(x = ''unterminated"}]}}]'::jsonb)
 ORDER BY node, message;

-- with analyze, nothing the statement does survives
SELECT count(*) AS advice FROM duet.plan_advice('DELETE FROM events WHERE kind = ''k1''', true);
SELECT count(*) FROM events;
SELECT count(*) FROM duet.plan_advice(NULL);

RESET search_path;
RESET max_parallel_workers_per_gather;
RESET jit;
DROP SCHEMA duet_adv CASCADE;
