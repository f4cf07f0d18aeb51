--
-- duet_upsert and duet_upsert_many: the scenarios of sql/upsert.sql that
-- SQLite has (no roles, no row-level security).  Results are JSON text:
-- {"row": {...}, "inserted": bool}.
--
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT UNIQUE,
    name TEXT,
    score REAL,
    tags TEXT,
    active INTEGER DEFAULT 1,
    double_score REAL GENERATED ALWAYS AS (score * 2) STORED,
    version INTEGER NOT NULL DEFAULT 1,
    photo BLOB
);
-- counts real writes: only_if_changed must not write a row
CREATE TRIGGER users_version AFTER UPDATE ON users
BEGIN UPDATE users SET version = OLD.version + 1 WHERE id = NEW.id; END;

-- insert, then update on the primary key (the default conflict target)
SELECT duet_upsert('users', '{"id": 1, "email": "a@x", "name": "Ann", "score": 1.5,
    "tags": ["a", "b c", "d\"e"]}');
SELECT duet_upsert('users', '{"id": 1, "name": "Anna"}');
-- columns the row does not give keep their values
SELECT r->>'email', r->>'name', r->'tags', r->>'version', i
  FROM (SELECT value->'row' AS r, value->>'inserted' AS i
          FROM json_each(json_array(duet_upsert('users', '{"id": 1, "score": 2}'))));

-- conflict on another unique key
SELECT duet_upsert('users', '{"email": "a@x", "name": "By email"}', '["email"]');
-- every given column outside the conflict target is updated, keys too
SELECT duet_upsert('users', '{"id": 99, "email": "b@x", "name": "B"}', '["email"]');
SELECT duet_upsert('users', '{"id": 98, "email": "b@x", "name": "B2"}', '["email"]');
SELECT id, email, name FROM users ORDER BY id;

-- update_columns limits what is overwritten
SELECT duet_upsert('users', '{"id": 1, "name": "Ignored", "score": 3}', NULL, '["score"]');
-- an empty update_columns inserts or returns the existing row untouched
SELECT duet_upsert('users', '{"id": 1, "name": "Ignored"}', NULL, '[]');
SELECT duet_upsert('users', '{"id": 2, "name": "Bob"}', NULL, '[]');

-- only_if_changed: an identical row is not written (version stays)
SELECT duet_upsert('users', '{"id": 2, "name": "Bob"}', NULL, NULL, 1);
SELECT version FROM users WHERE id = 2;
SELECT duet_upsert('users', '{"id": 2, "name": "Bob"}', NULL, NULL, 1);
SELECT version FROM users WHERE id = 2;
SELECT duet_upsert('users', '{"id": 2, "name": "Bobby"}', NULL, NULL, 1);
SELECT version FROM users WHERE id = 2;
-- null compares as a value: setting null is a change
SELECT duet_upsert('users', '{"id": 2, "name": null}', NULL, NULL, 1);
SELECT duet_upsert('users', '{"id": 2, "name": null}', NULL, NULL, 1);
SELECT version FROM users WHERE id = 2;

-- JSON values of every kind: booleans are 1/0, objects and arrays JSON text,
-- BLOBs come back as "\x..." strings
SELECT duet_upsert('users', '{"id": 3, "score": "12.50", "active": false, "tags": {"k": [1, 2]}}');
UPDATE users SET photo = x'00ff10' WHERE id = 3;
SELECT duet_upsert('users', '{"id": 3, "active": true, "tags": null}');

-- NULL arguments give NULL
SELECT duet_upsert(NULL, '{"id": 1}') IS NULL, duet_upsert('users', NULL) IS NULL;

-- identifiers are quoted everywhere
CREATE TABLE "Odd Table" ("Key" INTEGER, "select" TEXT, "a""b" INTEGER,
    CONSTRAINT odd_key UNIQUE ("select", "Key"));
SELECT duet_upsert('Odd Table', '{"Key": 1, "select": "x", "a\"b": 1}', '["Key", "select"]');
SELECT duet_upsert('Odd Table', '{"Key": 1, "select": "x", "a\"b": 2}', '["select", "Key"]');
-- values are bound: text that looks like SQL is stored as it is
SELECT duet_upsert('users', '{"id": 4, "name": "x''); DROP TABLE users; --"}');
SELECT count(*) FROM users;

--
-- errors: each names what is wrong, and nothing is written
--
SELECT duet_upsert('users', '{"id": 1, "nmae": "x"}');
SELECT duet_upsert('users', '{"id": 1}', '["nope"]');
SELECT duet_upsert('users', '{"id": 1}', NULL, '["nope"]');
SELECT duet_upsert('users', '{"id": 1, "name": "x"}', '["name"]');
SELECT duet_upsert('users', '{"id": 1, "name": "x"}', '["id", "email"]');
SELECT duet_upsert('users', '{"id": 1}', '["id", null]');
SELECT duet_upsert('users', '{"id": 1}', '"id"');
SELECT duet_upsert('users', '[{"id": 1}]');
SELECT duet_upsert('users', '"id"');
SELECT duet_upsert('users', 'null');
SELECT duet_upsert('users', '7');
SELECT duet_upsert('users', 'true');
SELECT duet_upsert('users', '{"id": 1');
SELECT duet_upsert('users', '{}');
SELECT duet_upsert('users', '{"id": 1, "double_score": 4}');
SELECT duet_upsert('users', '{"id": 1}', NULL, '["double_score"]');
SELECT duet_upsert('nosuch', '{"id": 1}');
SELECT duet_upsert('users');
-- a STRICT table checks types
CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER CHECK (n > 0)) STRICT;
SELECT duet_upsert('counters', '{"id": 1, "n": -1}');
SELECT duet_upsert('counters', '{"id": "one"}');
-- keys that ON CONFLICT cannot use are not offered
CREATE TABLE nokeys (a INTEGER, b INTEGER);
CREATE UNIQUE INDEX nokeys_partial ON nokeys (a) WHERE a > 0;
CREATE UNIQUE INDEX nokeys_expr ON nokeys (a + b);
SELECT duet_upsert('nokeys', '{"a": 1}');
SELECT duet_upsert('nokeys', '{"a": 1}', '["a"]');
CREATE TABLE nopk (a INTEGER UNIQUE, b INTEGER);
SELECT duet_upsert('nopk', '{"a": 1}');
CREATE VIEW users_view AS SELECT * FROM users;
SELECT duet_upsert('users_view', '{"id": 1}');
-- a failure at execution (NOT NULL) leaves nothing behind
SELECT duet_upsert('users', '{"id": 1, "version": null}');
SELECT id, name, version FROM users ORDER BY id;
-- a view or trigger cannot write through duet_upsert
CREATE VIEW ups_v AS SELECT duet_upsert('users', '{"id": 5}');
SELECT * FROM ups_v;

-- WITHOUT ROWID tables take an INSERT ... DO NOTHING then an UPDATE
CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT, n INTEGER DEFAULT 0) WITHOUT ROWID;
SELECT duet_upsert('kv', '{"k": "a", "v": "1"}');
SELECT duet_upsert('kv', '{"k": "a", "v": "2"}');
SELECT duet_upsert('kv', '{"k": "a", "v": "2"}', NULL, NULL, 1);
SELECT duet_upsert('kv', '{"k": "a", "v": "3", "n": 5}', NULL, '["n"]');
SELECT duet_upsert('kv', '{"k": "a", "v": "4"}', NULL, '[]');

--
-- duet_upsert_many
--
CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, qty INTEGER DEFAULT 0, note TEXT);
-- rows giving different columns; results in input order
SELECT key + 1 AS ordinality, value FROM json_each(duet_upsert_many('items', '[
    {"id": 1, "sku": "a", "qty": 1},
    {"id": 2, "sku": "b"},
    {"id": 3, "sku": "c", "qty": 3},
    {"id": 4, "sku": "d", "note": "n"}
]'));
SELECT key + 1 AS ordinality, value FROM json_each(duet_upsert_many('items', '[
    {"id": 5, "sku": "e", "qty": 5},
    {"id": 1, "sku": "a", "qty": 10},
    {"id": 2, "note": "second"},
    {"id": 6, "sku": "f", "qty": 6}
]'));
-- only_if_changed: unchanged rows come back too
SELECT key + 1, value->'row'->>'id', value->'row'->>'qty', value->>'inserted'
  FROM json_each(duet_upsert_many('items', '[
    {"id": 1, "qty": 10},
    {"id": 7, "qty": 7},
    {"id": 3, "qty": 30},
    {"id": 5, "qty": 5},
    {"qty": 0, "id": 8}
]', NULL, NULL, 1));
-- conflict on sku, nothing updated: existing rows are returned as they are
SELECT key + 1, value->'row'->>'id', value->'row'->>'sku', value->'row'->>'qty', value->>'inserted'
  FROM json_each(duet_upsert_many('items', '[
    {"id": 100, "sku": "b", "qty": 99},
    {"id": 9, "sku": "i", "qty": 9},
    {"id": 101, "sku": "a", "qty": 99}
]', '["sku"]', '[]'));
SELECT duet_upsert_many('items', '[]');
SELECT duet_upsert_many('items', NULL) IS NULL;
SELECT id, sku, qty, note FROM items ORDER BY id;
-- errors name the element; nothing is written
SELECT duet_upsert_many('items', '{"id": 1}');
SELECT duet_upsert_many('items', '[{"id": 50}, 1]');
SELECT duet_upsert_many('items', '[{"id": 50}, {"idd": 1}]');
SELECT duet_upsert_many('items', '[{"id": 50}, {}]');
-- a failure in the second row undoes the first one
SELECT duet_upsert_many('items', '[{"id": 50, "qty": 1}, {"id": 51, "sku": "a"}]');
SELECT count(*) AS none_written FROM items WHERE id >= 50;
-- the same key twice: the second row updates the first (SQLite upserts row by row)
SELECT duet_upsert_many('items', '[{"id": 52, "qty": 1}, {"id": 52, "qty": 2}]');

--
-- cached statements follow ALTER TABLE and CREATE INDEX
--
SELECT duet_upsert('items', '{"id": 1, "qty": 11}');
ALTER TABLE items ADD COLUMN price REAL DEFAULT 0;
SELECT duet_upsert('items', '{"id": 1, "qty": 12, "price": 9.99}');
ALTER TABLE items DROP COLUMN note;
SELECT duet_upsert('items', '{"id": 1, "qty": 13}');
ALTER TABLE items RENAME COLUMN qty TO quantity;
SELECT duet_upsert('items', '{"id": 1, "quantity": 14}');
SELECT duet_upsert('items', '{"id": 1, "qty": 14}');
UPDATE items SET price = id;
CREATE UNIQUE INDEX items_price_key ON items (price);
SELECT duet_upsert('items', '{"id": 1, "price": 1}', '["price"]');
SELECT duet_upsert_many('items', '[{"id": 1, "quantity": 15}]');

-- From here on no trigger: where nothing but the INSERT shapes a row and the
-- input gives all of it, the row is written from the input, not read back.
DROP TRIGGER users_version;

--
-- upserts inside a statement that writes (no savepoint can open there)
--
CREATE TABLE wlog (r TEXT);
CREATE TABLE w (id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO wlog SELECT duet_upsert('w', '{"id": 1, "v": "a"}');
INSERT INTO wlog SELECT duet_upsert('w', '{"id": 1, "v": "b"}');
INSERT INTO wlog SELECT duet_upsert_many('w', '[{"id": 2, "v": "c"}, {"id": 3, "v": "d"}]');
SELECT r FROM wlog;
-- a failing element undoes the whole statement (the autocommit transaction)
INSERT INTO wlog SELECT duet_upsert_many('w', '[{"id": 4, "v": "e"}, {"id": 5, "vv": 1}]');
SELECT count(*) AS none_written FROM w WHERE id >= 4;
BEGIN;
INSERT INTO wlog SELECT duet_upsert('w', '{"id": 6, "v": "f"}');
-- inside BEGIN no savepoint can open in a writing statement: refused, nothing written
INSERT INTO wlog SELECT duet_upsert_many('w', '[{"id": 7, "v": "g"}]');
-- from a SELECT it works within the transaction
SELECT duet_upsert_many('w', '[{"id": 8, "v": "h"}]');
COMMIT;
SELECT id, v FROM w ORDER BY id;

--
-- a temp table hides a main one of the same name, as in SQL
--
CREATE TABLE shadow (id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO shadow VALUES (1, 'main');
CREATE TEMP TABLE shadow (id INTEGER PRIMARY KEY, v TEXT);
SELECT duet_upsert('shadow', '{"id": 1, "v": "temp"}');
SELECT duet_upsert('shadow', '{"id": 1, "v": "temp2"}');
SELECT duet_upsert('main.shadow', '{"id": 1, "v": "main2"}');
SELECT duet_upsert('temp.shadow', '{"id": 2, "v": "t"}');
SELECT 'main', * FROM main.shadow UNION ALL SELECT 'temp', * FROM temp.shadow;
DROP TABLE temp.shadow;
SELECT duet_upsert('shadow', '{"id": 1, "v": "main3"}');
-- a temp table created after the main one was used: the next call sees it
CREATE TABLE late (id INTEGER PRIMARY KEY, v TEXT);
SELECT duet_upsert('late', '{"id": 1, "v": "a"}');
SELECT duet_upsert('late', '{"id": 1, "v": "b"}');
CREATE TEMP TABLE late (id INTEGER PRIMARY KEY, v TEXT, extra TEXT DEFAULT 'x');
SELECT duet_upsert('late', '{"id": 1, "v": "c"}');
SELECT duet_upsert('late', '{"id": 1, "v": "d", "extra": "y"}');
SELECT duet_upsert('main.late', '{"id": 1, "v": "e"}');
SELECT 'main', *, NULL FROM main.late UNION ALL SELECT 'temp', * FROM temp.late;

--
-- schema-qualified names, attached databases
--
ATTACH ':memory:' AS aux;
CREATE TABLE aux.t2 (id INTEGER PRIMARY KEY, v TEXT);
SELECT duet_upsert('aux.t2', '{"id": 1, "v": "x"}');
SELECT duet_upsert('t2', '{"id": 1, "v": "y"}');
SELECT duet_upsert_many('aux.t2', '[{"id": 2, "v": "z"}]');
SELECT * FROM aux.t2;
SELECT duet_upsert('nosuch.t2', '{"id": 1}');
SELECT duet_upsert('aux.nosuch', '{"id": 1}');
-- main comes before an attached database for an unqualified name
CREATE TABLE aux.w (id INTEGER PRIMARY KEY, v TEXT);
SELECT duet_upsert('w', '{"id": 9, "v": "i"}');
SELECT count(*) AS aux_rows FROM aux.w;
DETACH aux;

--
-- JSON strings PostgreSQL's jsonb would not take
--
CREATE TABLE js (id INTEGER PRIMARY KEY, v TEXT);
SELECT duet_upsert('js', '{"id": 1, "v": "a\u0000b"}');
SELECT duet_upsert('js', '{"id": 1, "v": "a\ud800b"}');
SELECT duet_upsert('js', '{"id": 1, "v": "\udc00"}');
SELECT duet_upsert('js', '{"id": 1, "v": "\ud800\ud800"}');
SELECT duet_upsert('js', '{"id": 1, "v": ["\u0000"]}');
SELECT duet_upsert_many('js', '[{"id": 1, "v": "\ud800"}]');
SELECT count(*) AS none_written FROM js;
-- a surrogate pair is one character
SELECT duet_upsert('js', '{"id": 2, "v": "\ud83d\ude00"}');
SELECT hex(v) FROM js;

--
-- integers beyond 64 bits become REAL, as the same literal does in SQLite
--
CREATE TABLE big (id INTEGER PRIMARY KEY, i INTEGER, n NUMERIC, t TEXT, r REAL);
SELECT duet_upsert('big', '{"id": 1, "i": -9223372036854775809, "n": 9223372036854775808, "t": 18446744073709551616, "r": -9223372036854775808}');
SELECT duet_upsert('big', '{"id": 2, "i": -9223372036854775809}');
INSERT INTO big VALUES (3, -9223372036854775809, 9223372036854775808, 18446744073709551616, -9223372036854775808);
SELECT id, typeof(i), i, typeof(n), n, typeof(t), t, typeof(r), r FROM big ORDER BY id;
-- the temp table's own shape decides: here it has no rowid
CREATE TABLE shadow2 (id INTEGER PRIMARY KEY, v TEXT);
CREATE TEMP TABLE shadow2 (id INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID;
SELECT duet_upsert('shadow2', '{"id": 1, "v": "new"}');
SELECT duet_upsert('shadow2', '{"id": 1, "v": "again"}');
SELECT 'main', * FROM main.shadow2 UNION ALL SELECT 'temp', * FROM temp.shadow2;

--
-- how a row is read: the argument's text (copied when short, taken from
-- SQLite when long or holding a NUL), numbers, names in any case
--
CREATE TABLE rd (id INTEGER PRIMARY KEY, r REAL, n NUMERIC, t TEXT, "x@" TEXT, "é" TEXT);
-- a row longer than the copy duet makes on the stack
SELECT length(duet_upsert('rd', json_object('id', 1, 't', printf('%.600c', 'x'))));
SELECT id, length(t) FROM rd;
-- text after a NUL is not seen, as sqlite3_value_text() gives the argument
SELECT duet_upsert('rd', '{"id": 2, "t": "a"}' || char(0) || 'not JSON');
-- decimals read exactly as strtod() reads them, short or not
SELECT duet_upsert('rd', '{"id": 3, "r": 1.5, "n": -0.25, "t": 3e5}');
SELECT duet_upsert('rd', '{"id": 4, "r": 0.1, "n": 1.5e-3, "t": 2.5E+2}');
SELECT duet_upsert('rd', '{"id": 5, "r": 123456789012345.6, "n": 1e23, "t": 1234567890.12345}');
SELECT duet_upsert('rd', '{"id": 6, "r": -0.0, "n": 0.30000000000000004, "t": 1E-22}');
SELECT id, printf('%!.17g', r), typeof(n), printf('%!.17g', n), typeof(t), t FROM rd
 WHERE id >= 3 ORDER BY id;
-- names: ASCII letters match in either case, nothing else does
SELECT duet_upsert('rd', '{"ID": 7, "T": "upper", "X@": "at"}');
SELECT duet_upsert('rd', '{"id": 7, "x`": "backquote"}');
SELECT duet_upsert('rd', '{"id": 7, "É": "e acute"}');
-- keys out of table order, and a repeated key (the last one wins)
SELECT duet_upsert('rd', '{"t": "a", "id": 8, "r": 2, "t": "b"}');
-- reals come back as SQLite writes them ("%!.15g"), halves and quarters too
CREATE TABLE fr (id INTEGER PRIMARY KEY, r REAL);
SELECT duet_upsert_many('fr', '[{"id": 1, "r": 0.5}, {"id": 2, "r": -0.25}, {"id": 3, "r": 12345.5},
    {"id": 4, "r": 0.0001220703125}, {"id": 5, "r": 6.103515625e-05}, {"id": 6, "r": 100000000000000.5},
    {"id": 7, "r": 0.1}, {"id": 8, "r": -7.75}, {"id": 9, "r": 999999999999999.5}, {"id": 10, "r": -0.5}]');
SELECT duet_upsert('rd', '{"id": 9, "r": 2.5}');
SELECT group_concat(r, ' ') FROM (SELECT json_object('r', r) AS r FROM fr ORDER BY id);
