--
-- duet.get_or_create
--
CREATE SCHEMA duet_goc;
SET search_path = duet_goc, public;

CREATE TABLE accounts (
    id serial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text,
    plan text NOT NULL DEFAULT 'free',
    org int,
    handle text,
    UNIQUE (org, handle)
);

-- created with the defaults, then found: defaults only apply on create
SELECT * FROM duet.get_or_create('accounts', '{"email": "alice@example.com"}',
                                 '{"name": "Alice"}');
SELECT * FROM duet.get_or_create('accounts', '{"email": "alice@example.com"}',
                                 '{"name": "Someone else", "plan": "pro"}');
-- defaults may be left out
SELECT "row"->>'email' AS email, "row"->>'plan' AS plan, created
  FROM duet.get_or_create('accounts', '{"email": "bob@example.com"}');
-- by primary key
SELECT "row"->>'email' AS email, created
  FROM duet.get_or_create('accounts', '{"id": 1}', '{"email": "never@example.com"}');
SELECT "row"->>'email' AS email, created
  FROM duet.get_or_create('accounts', '{"id": 100}', '{"email": "carol@example.com"}');
-- by a composite key, given in any order
SELECT "row"->>'handle' AS handle, created
  FROM duet.get_or_create('accounts', '{"handle": "ops", "org": 7}', '{"email": "ops@example.com"}');
SELECT "row"->>'email' AS email, created
  FROM duet.get_or_create('accounts', '{"org": 7, "handle": "ops"}', '{"email": "x@example.com"}');
-- more lookup columns than the key: they must match too
SELECT "row"->>'name' AS name, created
  FROM duet.get_or_create('accounts', '{"email": "alice@example.com", "name": "Alice"}');
SELECT "row"->>'name' AS name, created
  FROM duet.get_or_create('accounts', '{"email": "dave@example.com", "name": null}');
SELECT "row"->>'name' AS name, created
  FROM duet.get_or_create('accounts', '{"email": "dave@example.com", "name": null}');
SELECT duet.get_or_create(NULL, '{"id": 1}') IS NULL AS null_table,
       duet.get_or_create('accounts', NULL) IS NULL AS null_lookup,
       (duet.get_or_create('accounts', '{"id": 1}', NULL)).created AS null_defaults;
SELECT id, email, name, plan, org, handle FROM accounts ORDER BY id;

--
-- errors
--
\set VERBOSITY default
-- a row with the key exists but differs from the lookup
SELECT * FROM duet.get_or_create('accounts', '{"email": "alice@example.com", "name": "Bob"}');
-- the lookup must give a whole unique key
SELECT * FROM duet.get_or_create('accounts', '{"name": "Alice"}');
SELECT * FROM duet.get_or_create('accounts', '{"org": 7}');
CREATE TABLE nokey (a int);
SELECT * FROM duet.get_or_create('nokey', '{"a": 1}');
SELECT * FROM duet.get_or_create('accounts', '{"email": null}');
SELECT * FROM duet.get_or_create('accounts', '{}');
SELECT * FROM duet.get_or_create('accounts', '{"emial": "x"}');
SELECT * FROM duet.get_or_create('accounts', '{"email": "x"}', '{"nmae": "x"}');
SELECT * FROM duet.get_or_create('accounts', '{"email": "x"}', '{"email": "y"}');
SELECT * FROM duet.get_or_create('accounts', '["email"]');
SELECT * FROM duet.get_or_create('accounts', '{"email": "x"}', '"defaults"');
SELECT * FROM duet.get_or_create('accounts', '{"id": "abc"}');
SELECT * FROM duet.get_or_create('accounts', '{"email": "x"}', '{"org": "seven"}');
CREATE TABLE gen (id int PRIMARY KEY, n int, twice int GENERATED ALWAYS AS (n * 2) STORED);
SELECT * FROM duet.get_or_create('gen', '{"id": 1}', '{"twice": 2}');
SELECT * FROM duet.get_or_create('gen', '{"id": 1}', '{"n": 2}');
-- a constraint failing at insert leaves nothing behind
SELECT * FROM duet.get_or_create('accounts', '{"email": "eve@example.com"}', '{"plan": null}');
SELECT count(*) AS eve FROM accounts WHERE email = 'eve@example.com';

--
-- plans follow ALTER TABLE
--
ALTER TABLE accounts ADD COLUMN country text DEFAULT 'NL';
SELECT "row"->>'country' AS country, created
  FROM duet.get_or_create('accounts', '{"email": "frank@example.com"}', '{"country": "BE"}');
ALTER TABLE accounts DROP CONSTRAINT accounts_email_key;
SELECT * FROM duet.get_or_create('accounts', '{"email": "frank@example.com"}');
CREATE UNIQUE INDEX accounts_email_lower ON accounts (email);
SELECT "row"->>'country' AS country, created
  FROM duet.get_or_create('accounts', '{"email": "frank@example.com"}');

--
-- privileges and row-level security are the caller's
--
CREATE ROLE duet_goc_reader;
GRANT USAGE ON SCHEMA duet_goc TO duet_goc_reader;
GRANT SELECT ON accounts TO duet_goc_reader;
SET ROLE duet_goc_reader;
-- reading needs SELECT only; creating needs INSERT
SELECT "row"->>'email' AS email, created
  FROM duet.get_or_create('accounts', '{"email": "alice@example.com"}');
SELECT * FROM duet.get_or_create('accounts', '{"email": "grace@example.com"}');
RESET ROLE;

CREATE TABLE secrets (id int PRIMARY KEY, owner name NOT NULL DEFAULT current_user, v text);
ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON secrets USING (owner = current_user);
GRANT SELECT, INSERT ON secrets TO duet_goc_reader;
INSERT INTO secrets VALUES (1, 'someone_else', 'hidden');
SET ROLE duet_goc_reader;
SELECT "row"->>'owner' AS owner, created
  FROM duet.get_or_create('secrets', '{"id": 2}', '{"v": "mine"}');
SELECT "row"->>'v' AS v, created FROM duet.get_or_create('secrets', '{"id": 2}');
-- a row the policy hides is neither returned nor duplicated
SELECT * FROM duet.get_or_create('secrets', '{"id": 1}');
RESET ROLE;
SELECT id, owner, v FROM secrets ORDER BY id;

RESET search_path;
DROP SCHEMA duet_goc CASCADE;
DROP ROLE duet_goc_reader;
