-- Query-plan helpers: duet_plan(sql) over EXPLAIN QUERY PLAN, and
-- duet_plan_advice(sql) with the CREATE INDEX that would help.
.headers on
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER, status TEXT, total REAL,
                     "placed at" TEXT);
CREATE INDEX orders_status ON orders (status);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, country TEXT);

-- duet_plan: id, parent, detail; the statement is prepared, never run
SELECT * FROM duet_plan('SELECT * FROM orders WHERE customer = 7 ORDER BY total');
SELECT detail FROM duet_plan('SELECT * FROM orders WHERE status = ''open''');
SELECT detail FROM duet_plan('SELECT * FROM orders WHERE id = 1');
SELECT detail FROM duet_plan('DELETE FROM orders WHERE customer = 1');
SELECT count(*) AS still_empty FROM orders;
-- a column can feed the argument
SELECT q.n, p.detail
  FROM (SELECT 1 AS n, 'SELECT * FROM customers WHERE id = 2' AS s) q, duet_plan(q.s) p;
SELECT count(*) FROM duet_plan(NULL);

-- advice: a full scan filtered by WHERE, with the index that makes it a search
SELECT * FROM duet_plan_advice('SELECT * FROM orders WHERE customer = 7');
-- equalities first, then one range
SELECT * FROM duet_plan_advice('SELECT * FROM orders WHERE total > 100 AND customer = 7');
-- identifiers in the suggestion are quoted when they need it
CREATE TABLE "Odd Events" ("Event Id" INTEGER, "select" TEXT);
SELECT * FROM duet_plan_advice('SELECT * FROM "Odd Events" WHERE "select" = ''s1'' AND "Event Id" < 100');
-- the suggested index removes the advice
CREATE INDEX orders_customer_total ON orders(customer, total);
SELECT count(*) FROM duet_plan_advice('SELECT * FROM orders WHERE total > 100 AND customer = 7');
DROP INDEX orders_customer_total;
-- a scan with nothing to filter, or a search already: no advice
SELECT count(*) FROM duet_plan_advice('SELECT * FROM orders');
SELECT count(*) FROM duet_plan_advice('SELECT * FROM orders WHERE status = ''open''');
-- temporary b-trees for ORDER BY, GROUP BY and DISTINCT
SELECT * FROM duet_plan_advice('SELECT * FROM orders WHERE status = ''open'' ORDER BY total');
SELECT * FROM duet_plan_advice('SELECT customer, sum(total) FROM orders GROUP BY customer');
SELECT * FROM duet_plan_advice('SELECT DISTINCT country FROM customers');
-- joins: a scan of the outer table, an automatic index built for every run
SELECT * FROM duet_plan_advice(
  'SELECT c.name, o.total FROM customers c JOIN orders o ON o.customer = c.id WHERE c.country = ''FR''');
SELECT * FROM duet_plan_advice(
  'SELECT c.name, o.total FROM customers c JOIN orders o ON c.name = o.total');
-- an existing index that the join uses: no advice
SELECT count(*) FROM duet_plan_advice(
  'SELECT * FROM customers c, orders o WHERE c.name = o.status');
-- a subquery's scan is found too
SELECT * FROM duet_plan_advice(
  'SELECT * FROM orders o WHERE o.total IN (SELECT total FROM orders WHERE customer = 3)');
-- writes are explained too; identifiers that need quotes get them
SELECT * FROM duet_plan_advice('UPDATE orders SET total = 0 WHERE "placed at" < ''2020''');

-- errors name the function and the problem
SELECT * FROM duet_plan('SELEC * FROM orders');
SELECT * FROM duet_plan('SELECT * FROM nosuch');
SELECT * FROM duet_plan('SELECT nosuch FROM orders');
SELECT * FROM duet_plan('SELECT 1; SELECT 2');
SELECT * FROM duet_plan('  ');
SELECT * FROM duet_plan;
SELECT * FROM duet_plan_advice('SELECT * FROM orders WHERE');
SELECT * FROM duet_plan_advice;
-- nothing is run: a PRAGMA acts as it is prepared, so it is refused, also
-- behind a comment and from a view
PRAGMA foreign_keys;
SELECT * FROM duet_plan('PRAGMA foreign_keys = ON');
SELECT * FROM duet_plan_advice('/* x */ -- y
  pragma foreign_keys = ON');
CREATE VIEW pv AS SELECT * FROM duet_plan('PRAGMA foreign_keys = ON');
SELECT * FROM pv;
DROP VIEW pv;
PRAGMA foreign_keys;
-- the hidden argument column reads back; a repeated constraint is checked
SELECT sql, detail FROM duet_plan WHERE sql = 'SELECT * FROM orders';
SELECT count(*) FROM duet_plan WHERE sql = 'SELECT * FROM orders' AND sql = 'SELECT 2';
SELECT count(*) FROM duet_plan WHERE sql = 'SELECT * FROM orders' AND sql = 'SELECT * FROM orders';
