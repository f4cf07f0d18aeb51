--
-- duet_get_or_create: the scenarios of sql/get_or_create.sql that SQLite
-- has (no roles, no row-level security).  Results are JSON text:
-- {"row": {...}, "created": bool}.
--
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    name TEXT,
    plan TEXT NOT NULL DEFAULT 'free',
    org INTEGER,
    handle TEXT,
    UNIQUE (org, handle)
);

-- created with the defaults, then found: defaults only apply on create
SELECT duet_get_or_create('accounts', '{"email": "alice@example.com"}', '{"name": "Alice"}');
SELECT duet_get_or_create('accounts', '{"email": "alice@example.com"}',
                          '{"name": "Someone else", "plan": "pro"}');
-- defaults may be left out
SELECT value->'row'->>'email', value->'row'->>'plan', value->>'created'
  FROM json_each(json_array(duet_get_or_create('accounts', '{"email": "bob@example.com"}')));
-- by primary key
SELECT duet_get_or_create('accounts', '{"id": 1}', '{"email": "never@example.com"}');
SELECT duet_get_or_create('accounts', '{"id": 100}', '{"email": "carol@example.com"}');
-- by a composite key, given in any order
SELECT duet_get_or_create('accounts', '{"handle": "ops", "org": 7}', '{"email": "ops@example.com"}');
SELECT duet_get_or_create('accounts', '{"org": 7, "handle": "ops"}', '{"email": "x@example.com"}');
-- more lookup columns than the key: they must match too
SELECT duet_get_or_create('accounts', '{"email": "alice@example.com", "name": "Alice"}');
SELECT duet_get_or_create('accounts', '{"email": "dave@example.com", "name": null}');
SELECT duet_get_or_create('accounts', '{"email": "dave@example.com", "name": null}');
SELECT duet_get_or_create(NULL, '{"id": 1}') IS NULL AS null_table,
       duet_get_or_create('accounts', NULL) IS NULL AS null_lookup,
       duet_get_or_create('accounts', '{"id": 1}', NULL) ->> 'created' AS null_defaults;
SELECT id, email, name, plan, org, handle FROM accounts ORDER BY id;

--
-- errors
--
-- a row with the key exists but differs from the lookup
SELECT duet_get_or_create('accounts', '{"email": "alice@example.com", "name": "Bob"}');
SELECT duet_get_or_create('accounts', '{"id": 1, "email": "bob@example.com"}');
-- the lookup must give a whole unique key
SELECT duet_get_or_create('accounts', '{"name": "Alice"}');
SELECT duet_get_or_create('accounts', '{"org": 7}');
CREATE TABLE nokey (a INTEGER);
SELECT duet_get_or_create('nokey', '{"a": 1}');
SELECT duet_get_or_create('accounts', '{"email": null}');
SELECT duet_get_or_create('accounts', '{}');
SELECT duet_get_or_create('accounts', '{"emial": "x"}');
SELECT duet_get_or_create('accounts', '{"email": "x"}', '{"nmae": "x"}');
SELECT duet_get_or_create('accounts', '{"email": "x"}', '{"email": "y"}');
SELECT duet_get_or_create('accounts', '["email"]');
SELECT duet_get_or_create('accounts', '{"email": "x"}', '"defaults"');
SELECT duet_get_or_create('accounts', '{"email": "x"');
SELECT duet_get_or_create('nosuch', '{"email": "x"}');
CREATE TABLE gen (id INTEGER PRIMARY KEY, n INTEGER, twice INTEGER GENERATED ALWAYS AS (n * 2));
SELECT duet_get_or_create('gen', '{"id": 1}', '{"twice": 2}');
SELECT duet_get_or_create('gen', '{"id": 1}', '{"n": 2}');
-- a constraint failing at insert leaves nothing behind
SELECT duet_get_or_create('accounts', '{"email": "eve@example.com"}', '{"plan": null}');
SELECT count(*) AS eve FROM accounts WHERE email = 'eve@example.com';
-- a view or trigger cannot write through it
CREATE VIEW goc_v AS SELECT duet_get_or_create('accounts', '{"id": 1}');
SELECT * FROM goc_v;

--
-- cached statements follow ALTER TABLE and index changes
--
ALTER TABLE accounts ADD COLUMN country TEXT DEFAULT 'NL';
SELECT duet_get_or_create('accounts', '{"email": "frank@example.com"}', '{"country": "BE"}');
CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT, name TEXT);
CREATE UNIQUE INDEX people_email ON people (email);
SELECT duet_get_or_create('people', '{"email": "a@x"}', '{"name": "A"}');
DROP INDEX people_email;
SELECT duet_get_or_create('people', '{"email": "a@x"}');
CREATE UNIQUE INDEX people_email_again ON people (email);
SELECT duet_get_or_create('people', '{"email": "a@x"}');

-- inside a test session, as anything else
SELECT duet_test_begin();
SELECT duet_get_or_create('people', '{"email": "session@x"}');
SELECT duet_test_end();
SELECT count(*) FROM people WHERE email = 'session@x';

-- a temp table hides a main one; qualified names
CREATE TABLE gs (id INTEGER PRIMARY KEY, email TEXT UNIQUE);
CREATE TEMP TABLE gs (id INTEGER PRIMARY KEY, email TEXT UNIQUE);
SELECT duet_get_or_create('gs', '{"email": "t@x"}');
SELECT duet_get_or_create('main.gs', '{"email": "m@x"}');
SELECT duet_get_or_create('temp.gs', '{"email": "t@x"}');
SELECT 'main', * FROM main.gs UNION ALL SELECT 'temp', * FROM temp.gs;
SELECT duet_get_or_create('gs', '{"email": "a\u0000"}');
