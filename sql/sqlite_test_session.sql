-- Force-rollback test sessions: duet_test_begin() / duet_test_end() and the
-- mapping of the program's own transaction statements onto a savepoint.
-- The same scenarios as sql/test_session.sql where SQLite has them.
CREATE TABLE ts_t (id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO ts_t VALUES (100, 'before the session');
SELECT duet_test_session();

-- everything done in a test session is gone after test_end, DDL included
SELECT duet_test_begin();
SELECT duet_test_session();
INSERT INTO ts_t VALUES (1, 'autocommit');
CREATE TABLE ts_inner (x INTEGER);
INSERT INTO ts_inner VALUES (1);
DROP TABLE ts_t;
SELECT name FROM sqlite_schema ORDER BY name;
SELECT duet_test_end();
SELECT name FROM sqlite_schema ORDER BY name;
SELECT id, v FROM ts_t ORDER BY id;
SELECT duet_test_session();

-- BEGIN / COMMIT / ROLLBACK keep their visible meaning
SELECT duet_test_begin();
BEGIN;
SELECT duet_test_session();
INSERT INTO ts_t VALUES (1, 'committed');
COMMIT;
SELECT duet_test_session();
BEGIN TRANSACTION;
INSERT INTO ts_t VALUES (2, 'rolled back');
ROLLBACK;
SELECT id, v FROM ts_t ORDER BY id;
BEGIN IMMEDIATE;
INSERT INTO ts_t VALUES (3, 'rolled back again');
ROLLBACK TRANSACTION;
BEGIN DEFERRED;
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
SELECT duet_test_session();
-- BEGIN inside the program's transaction fails as without a session
BEGIN;
BEGIN;
SELECT duet_test_session();
ROLLBACK;
SELECT duet_test_end();
SELECT id, v FROM ts_t ORDER BY id;

-- the program's savepoints pass through
SELECT duet_test_begin();
BEGIN;
INSERT INTO ts_t VALUES (1, 'kept');
SAVEPOINT a;
INSERT INTO ts_t VALUES (2, 'undone by rollback to a');
SAVEPOINT b;
ROLLBACK TO a;
INSERT INTO ts_t VALUES (3, 'released');
SAVEPOINT c;
INSERT INTO ts_t VALUES (4, 'released too');
RELEASE c;
RELEASE a;
COMMIT;
SELECT id, v FROM ts_t ORDER BY id;
-- a savepoint outside BEGIN works as in SQLite, inside the session
SAVEPOINT outside;
INSERT INTO ts_t VALUES (5, 'in a savepoint');
ROLLBACK TO outside;
RELEASE outside;
SELECT id, v FROM ts_t ORDER BY id;
-- a COMMIT or ROLLBACK without BEGIN does nothing (PostgreSQL warns)
COMMIT;
ROLLBACK;
SELECT count(*) FROM ts_t;
SELECT duet_test_end();
SELECT id, v FROM ts_t ORDER BY id;

-- statements that end the transaction themselves: the session goes on
SELECT duet_test_begin();
CREATE TABLE ts_u (k INTEGER PRIMARY KEY);
INSERT INTO ts_u VALUES (1);
INSERT OR ROLLBACK INTO ts_u VALUES (1);
SELECT duet_test_session();
INSERT INTO ts_t VALUES (8, 'after the conflict');
SELECT id, v FROM ts_t ORDER BY id;
SELECT duet_test_end();
SELECT id, v FROM ts_t ORDER BY id;
SELECT count(*) FROM sqlite_schema WHERE name = 'ts_u';

-- errors: twice, inside a transaction, end without begin; nothing lost
SELECT duet_test_begin();
INSERT INTO ts_t VALUES (9, 'in the session');
SELECT duet_test_begin();
SELECT id, v FROM ts_t ORDER BY id;
SELECT duet_test_end();
SELECT duet_test_end();
BEGIN;
INSERT INTO ts_t VALUES (10, 'program transaction');
SELECT duet_test_begin();
COMMIT;
SELECT id, v FROM ts_t ORDER BY id;
DELETE FROM ts_t WHERE id = 10;
-- a view or trigger cannot start a session
CREATE VIEW ts_v AS SELECT duet_test_begin();
SELECT * FROM ts_v;
DROP VIEW ts_v;

-- prepared statements compiled during a session are compiled again after it
SELECT duet_test_begin();
SELECT duet_test_end();
BEGIN;
INSERT INTO ts_t VALUES (11, 'real transaction');
ROLLBACK;
SELECT id, v FROM ts_t ORDER BY id;

-- an in-memory database works the same way
ATTACH ':memory:' AS mem;
CREATE TABLE mem.m (x INTEGER);
INSERT INTO mem.m VALUES (1);
SELECT duet_test_begin();
INSERT INTO mem.m VALUES (2);
DELETE FROM ts_t;
SELECT (SELECT count(*) FROM mem.m), (SELECT count(*) FROM ts_t);
SELECT duet_test_end();
SELECT (SELECT count(*) FROM mem.m), (SELECT count(*) FROM ts_t);
DETACH mem;
-- statements that cannot run in a transaction fail inside a session
SELECT duet_test_begin();
VACUUM;
PRAGMA journal_mode = WAL;
SELECT duet_test_end();
