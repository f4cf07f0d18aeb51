-- Force-rollback test sessions: duet.test_begin() / duet.test_end() and the
-- mapping of the program's own transaction statements onto savepoints.
CREATE TABLE ts_t (id int PRIMARY KEY, v text);
CREATE SEQUENCE ts_seq;
SELECT active, since IS NULL AS no_since, depth FROM duet.test_session();

-- everything done in a test session is gone after test_end
SELECT duet.test_begin();
SELECT active, since IS NOT NULL AS has_since, depth, restore_sequences FROM duet.test_session();
INSERT INTO ts_t VALUES (1, 'autocommit');
CREATE TABLE ts_inner (x int);
SELECT count(*) FROM ts_t;
SELECT duet.test_end();
SELECT count(*) FROM ts_t;
SELECT to_regclass('ts_inner') IS NULL AS ts_inner_gone;
SELECT active, depth FROM duet.test_session();

-- BEGIN / COMMIT / ROLLBACK keep their visible meaning
SELECT duet.test_begin();
BEGIN;
SELECT depth FROM duet.test_session();
INSERT INTO ts_t VALUES (1, 'committed');
COMMIT;
SELECT depth FROM duet.test_session();
START TRANSACTION;
INSERT INTO ts_t VALUES (2, 'rolled back');
ROLLBACK;
SELECT id, v FROM ts_t ORDER BY id;
BEGIN;
INSERT INTO ts_t VALUES (3, 'rolled back again');
ABORT;
BEGIN;
INSERT INTO ts_t VALUES (4, 'ended');
END;
SELECT id, v FROM ts_t ORDER BY id;
-- work between a ROLLBACK and the next BEGIN survives that transaction's ROLLBACK
BEGIN;
INSERT INTO ts_t VALUES (5, 'rolled back');
ROLLBACK;
INSERT INTO ts_t VALUES (6, 'autocommit after rollback');
BEGIN;
INSERT INTO ts_t VALUES (7, 'rolled back');
ROLLBACK;
SELECT id, v FROM ts_t ORDER BY id;
-- repeated BEGIN/ROLLBACK reuses one level
BEGIN; ROLLBACK; BEGIN; ROLLBACK; BEGIN; ROLLBACK;
-- a program that only rolls back, with writes in between: each BEGIN merges
-- the levels left below it (the depth stays constant), nothing visible changes
\set ECHO none
SELECT 'BEGIN', format('INSERT INTO ts_t VALUES (%s, %L)', 100 + i, 'rolled back'),
       'ROLLBACK', format('INSERT INTO ts_t VALUES (%s, %L)', 200 + i, 'kept')
  FROM generate_series(1, 80) AS i \gexec
\set ECHO all
SELECT count(*) FILTER (WHERE v = 'kept') AS kept,
       count(*) FILTER (WHERE v = 'rolled back') AS rolled_back FROM ts_t;
BEGIN;
INSERT INTO ts_t VALUES (300, 'rolled back');
SAVEPOINT s;
ROLLBACK;
DECLARE ts_cur CURSOR WITH HOLD FOR SELECT id FROM ts_t WHERE id >= 279 ORDER BY id;
INSERT INTO ts_t VALUES (301, 'kept');
BEGIN;
FETCH 1 FROM ts_cur;
ROLLBACK;
FETCH ALL FROM ts_cur;
CLOSE ts_cur;
SELECT depth FROM duet.test_session();
SELECT duet.test_end();
SELECT count(*) FROM ts_t;

-- AND CHAIN
SELECT duet.test_begin();
INSERT INTO ts_t VALUES (0, 'autocommit');
BEGIN;
INSERT INTO ts_t VALUES (1, 'committed by chain');
COMMIT AND CHAIN;
SELECT depth FROM duet.test_session();
INSERT INTO ts_t VALUES (2, 'rolled back by chain');
ROLLBACK AND CHAIN;
SELECT depth FROM duet.test_session();
INSERT INTO ts_t VALUES (3, 'rolled back');
ROLLBACK;
SELECT depth FROM duet.test_session();
SELECT id, v FROM ts_t ORDER BY id;
-- AND CHAIN without BEGIN is an error; the ROLLBACK after it restarts the session
COMMIT AND CHAIN;
ROLLBACK;
ROLLBACK AND CHAIN;
ROLLBACK;
SELECT count(*) FROM ts_t;
SELECT duet.test_end();

-- the program's savepoints pass through
SELECT duet.test_begin();
BEGIN;
INSERT INTO ts_t VALUES (1, 'kept');
SAVEPOINT a;
INSERT INTO ts_t VALUES (2, 'undone by rollback to a');
SAVEPOINT b;
SELECT depth FROM duet.test_session();
ROLLBACK TO a;
SELECT depth FROM duet.test_session();
INSERT INTO ts_t VALUES (3, 'released');
SAVEPOINT c;
INSERT INTO ts_t VALUES (4, 'released too');
RELEASE c;
SELECT depth FROM duet.test_session();
RELEASE a;
SELECT depth FROM duet.test_session();
COMMIT;
SELECT id, v FROM ts_t ORDER BY id;
-- names are looked up among the program's savepoints only
BEGIN;
SAVEPOINT a;
RELEASE a;
ROLLBACK TO a;
ROLLBACK;
BEGIN;
SAVEPOINT duet_test_session_1;
ROLLBACK;
BEGIN;
ROLLBACK TO duet_test_session_1;
ROLLBACK;
SELECT id, v FROM ts_t ORDER BY id;
-- a savepoint of a committed transaction is gone, as without a test session
BEGIN;
SAVEPOINT s;
COMMIT AND CHAIN;
ROLLBACK TO s;
ROLLBACK;
-- outside a program transaction savepoints are refused, as PostgreSQL does
SAVEPOINT outside;
ROLLBACK;
RELEASE outside;
ROLLBACK;
ROLLBACK TO outside;
ROLLBACK;
-- so are a COMMIT or ROLLBACK without BEGIN, with a warning
COMMIT;
ROLLBACK;
SELECT duet.test_end();

-- after an error inside a program transaction, ROLLBACK undoes only it
SELECT duet.test_begin();
INSERT INTO ts_t VALUES (1, 'before');
BEGIN;
INSERT INTO ts_t VALUES (2, 'lost');
INSERT INTO ts_t VALUES (1, 'duplicate');
SELECT 1;
ROLLBACK;
SELECT id, v FROM ts_t ORDER BY id;
-- COMMIT of a failed transaction rolls it back
BEGIN;
INSERT INTO ts_t VALUES (1, 'duplicate');
COMMIT;
SELECT id, v FROM ts_t ORDER BY id;
-- ROLLBACK TO recovers inside the transaction
BEGIN;
SAVEPOINT s;
INSERT INTO ts_t VALUES (1, 'duplicate');
ROLLBACK TO s;
INSERT INTO ts_t VALUES (3, 'after rollback to');
COMMIT;
SELECT id, v FROM ts_t ORDER BY id;
-- an error outside a program transaction: ROLLBACK restarts the session
INSERT INTO ts_t VALUES (1, 'duplicate');
SELECT 1;
ROLLBACK;
SELECT active, depth FROM duet.test_session();
SELECT count(*) FROM ts_t;
INSERT INTO ts_t VALUES (9, 'after restart');
SELECT duet.test_end();
SELECT count(*) FROM ts_t;

-- statements that cannot run in a transaction block say why
SELECT duet.test_begin();
VACUUM ts_t;
ROLLBACK;
CREATE DATABASE duet_ts_never;
ROLLBACK;
CREATE INDEX CONCURRENTLY ts_t_v ON ts_t (v);
ROLLBACK;
CREATE PROCEDURE ts_commits() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;
CALL ts_commits();
ROLLBACK;
BEGIN;
PREPARE TRANSACTION 'duet_ts';
ROLLBACK;
PREPARE TRANSACTION 'duet_ts';
COMMIT PREPARED 'duet_ts';
ROLLBACK;
SELECT active FROM duet.test_session();
SELECT duet.test_end();

-- guards: each a clear error, never a FATAL, and the session goes on
SELECT duet.test_end();
SELECT duet.test_begin() \; SELECT 1;
SELECT 1 \; SELECT duet.test_begin();
SELECT active FROM duet.test_session();
BEGIN;
SELECT duet.test_begin();
ROLLBACK;
SELECT active FROM duet.test_session();
-- the statement that calls test_begin fails after it: no session, and the
-- next statement says so instead of running outside a transaction block
SELECT duet.test_begin(), 1 / (random() * 0)::int;
INSERT INTO ts_t VALUES (99, 'not run');
SELECT active FROM duet.test_session();
SELECT duet.test_begin() FROM generate_series(1, 2);
SELECT active FROM duet.test_session();
SELECT active FROM duet.test_session();
-- test_begin and test_end in one statement: an error, never a FATAL
SELECT duet.test_begin(), duet.test_end();
SELECT active FROM duet.test_session();
SELECT active FROM duet.test_session();
SELECT count(*) FROM ts_t;
DO $$ BEGIN PERFORM duet.test_begin(); EXCEPTION WHEN division_by_zero THEN NULL; END $$;
SELECT active FROM duet.test_session();
SELECT duet.test_begin();
DO $$ BEGIN PERFORM duet.test_begin(); EXCEPTION WHEN division_by_zero THEN NULL; END $$;
ROLLBACK;
INSERT INTO ts_t VALUES (1, 'kept through a failed begin');
BEGIN;
SELECT duet.test_begin();
ROLLBACK;
SELECT count(*) FROM ts_t;
SELECT duet.test_begin();
ROLLBACK;
SELECT active FROM duet.test_session();
INSERT INTO ts_t VALUES (1, 'kept through a failed end');
DO $$ BEGIN PERFORM duet.test_end(); EXCEPTION WHEN division_by_zero THEN NULL; END $$;
ROLLBACK;
SELECT duet.test_end() \; SELECT 1;
ROLLBACK;
SELECT active FROM duet.test_session();
-- test_end inside a program transaction discards it too
BEGIN;
INSERT INTO ts_t VALUES (2, 'discarded');
SELECT duet.test_end();
SELECT active, depth FROM duet.test_session();
SELECT count(*) FROM ts_t;
-- the hook leaves sessions without a test session alone
BEGIN;
SAVEPOINT s;
ROLLBACK TO s;
COMMIT;
COMMIT;

-- sequences: restored by test_end when test_begin asks for it
SELECT nextval('ts_seq');
-- a null argument still starts the session (it means false)
SELECT duet.test_begin(NULL);
SELECT active, restore_sequences FROM duet.test_session();
SELECT duet.test_end();
SELECT duet.test_begin(restore_sequences => true);
SELECT restore_sequences FROM duet.test_session();
SELECT nextval('ts_seq'), nextval('ts_seq');
CREATE SEQUENCE ts_seq_inner;
SELECT nextval('ts_seq_inner');
SELECT duet.test_end();
SELECT nextval('ts_seq');
SELECT duet.test_begin();
SELECT nextval('ts_seq');
SELECT duet.test_end();
SELECT nextval('ts_seq');
-- a sequence the role may read and set in a schema it cannot reach is skipped
CREATE ROLE ts_seq_role;
CREATE SCHEMA ts_hidden;
CREATE SEQUENCE ts_hidden.s;
GRANT SELECT, UPDATE ON ts_hidden.s TO ts_seq_role;
SET ROLE ts_seq_role;
SELECT duet.test_begin(restore_sequences => true);
SELECT duet.test_end();
RESET ROLE;
DROP SCHEMA ts_hidden CASCADE;
DROP ROLE ts_seq_role;

-- now() stays at the start of the session
SELECT duet.test_begin();
CREATE TEMP TABLE ts_now AS SELECT now() AS t;
SELECT pg_sleep(0.01);
SELECT now() = t AS frozen FROM ts_now;
SELECT duet.test_end();

DROP TABLE ts_t;
DROP SEQUENCE ts_seq;
