-- Transaction age and the per-connection transaction timeout:
-- duet_txn_age(), duet_txn_timeout(seconds), duet_txn_timeout_error().
-- Ages are compared with thresholds; no timing is printed.
CREATE TABLE ta_t (x INTEGER);
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200)
INSERT INTO ta_t SELECT i FROM s;

-- NULL outside a transaction, seconds since BEGIN inside one
SELECT duet_txn_age() IS NULL AS no_txn;
BEGIN;
SELECT typeof(duet_txn_age()), duet_txn_age() BETWEEN 0 AND 1 AS just_begun;
.shell sleep 0.3
SELECT duet_txn_age() > 0.25 AS aged;
COMMIT;
SELECT duet_txn_age() IS NULL AS no_txn;
-- the age counts from BEGIN, not from the first statement that reads
BEGIN;
.shell sleep 0.3
SELECT count(*) FROM ta_t;
SELECT duet_txn_age() > 0.25 AS from_begin;
ROLLBACK;
-- a savepoint opened outside BEGIN is a transaction too
SAVEPOINT sp;
SELECT duet_txn_age() BETWEEN 0 AND 1 AS in_savepoint;
RELEASE sp;
SELECT duet_txn_age() IS NULL AS no_txn;
-- in a test session the program's own BEGIN counts, not the session's
SELECT duet_test_begin();
.shell sleep 0.6
SELECT duet_txn_age() IS NULL AS session_is_not_a_txn;
BEGIN;
SELECT duet_txn_age() < 0.5 AS program_txn_only;
COMMIT;
SELECT duet_test_end();

-- the limit: off by default, set, read back, refused when negative
SELECT duet_txn_timeout();
SELECT duet_txn_timeout(0.5);
SELECT duet_txn_timeout();
SELECT duet_txn_timeout(-1);
SELECT duet_txn_timeout('soon');
SELECT duet_txn_timeout(NULL);
SELECT duet_txn_timeout_error() IS NULL AS no_timeout_yet;

-- a statement that starts in a transaction older than the limit is
-- interrupted, and the transaction is rolled back
BEGIN;
INSERT INTO ta_t VALUES (1000);
.shell sleep 0.6
INSERT INTO ta_t VALUES (1001);
SELECT duet_txn_age() IS NULL AS rolled_back;
SELECT duet_txn_timeout_error();
SELECT count(*) FROM ta_t WHERE x >= 1000;
-- a COMMIT of an expired transaction fails: there is nothing left to commit
BEGIN;
INSERT INTO ta_t VALUES (1002);
.shell sleep 0.6
COMMIT;
SELECT count(*) FROM ta_t WHERE x >= 1000;
-- a ROLLBACK of an expired transaction just rolls back
BEGIN;
INSERT INTO ta_t VALUES (1003);
.shell sleep 0.6
ROLLBACK;
SELECT count(*) FROM ta_t WHERE x >= 1000;

-- a statement still running when the transaction passes the limit is
-- interrupted through the progress handler: a write...
BEGIN;
INSERT INTO ta_t VALUES (1004);
UPDATE ta_t SET x = x + (SELECT count(*) FROM ta_t a, ta_t b, ta_t c, ta_t d) WHERE x = 1004;
SELECT duet_txn_age() IS NULL AS rolled_back;
SELECT count(*) FROM ta_t WHERE x >= 1000;
-- ...and a read, whose transaction is rolled back before the next statement
BEGIN;
INSERT INTO ta_t VALUES (1005);
SELECT count(*) FROM ta_t a, ta_t b, ta_t c, ta_t d;
SELECT duet_txn_age() IS NULL AS rolled_back;
SELECT count(*) FROM ta_t WHERE x >= 1000;
-- an autocommit statement is its own transaction
SELECT count(*) FROM ta_t a, ta_t b, ta_t c, ta_t d;
-- short transactions are not affected
BEGIN;
INSERT INTO ta_t VALUES (1006);
COMMIT;
SELECT count(*) FROM ta_t WHERE x >= 1000;
-- a test session is exempt, as the PostgreSQL reaper exempts it (an
-- interrupted write would roll back the session's own transaction)
SELECT duet_test_begin();
BEGIN;
INSERT INTO ta_t VALUES (2000);
.shell sleep 0.6
INSERT INTO ta_t VALUES (2001);
COMMIT;
SELECT count(*) FROM ta_t WHERE x >= 2000;
SELECT duet_test_end();
SELECT count(*) FROM ta_t WHERE x >= 2000;
-- 0 turns the limit off
SELECT duet_txn_timeout(0);
BEGIN;
.shell sleep 0.6
SELECT count(*) FROM ta_t WHERE x >= 1000;
COMMIT;
