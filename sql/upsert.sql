--
-- duet.upsert and duet.upsert_many
--
CREATE SCHEMA duet_ups;
SET search_path = duet_ups, public;

CREATE TABLE users (
    id int PRIMARY KEY,
    email text UNIQUE,
    name text,
    score numeric,
    tags text[],
    attrs jsonb,
    active boolean DEFAULT true,
    double_score numeric GENERATED ALWAYS AS (score * 2) STORED,
    version int NOT NULL DEFAULT 1
);
-- counts real writes: only_if_changed must not write a tuple
CREATE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN NEW.version := OLD.version + 1; RETURN NEW; END$$;
CREATE TRIGGER users_version BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION bump_version();

-- insert, then update on the primary key (the default conflict target)
SELECT * FROM duet.upsert('users', '{"id": 1, "email": "a@x", "name": "Ann", "score": 1.5,
    "tags": ["a", "b c", "d\"e"], "attrs": {"k": [1, 2]}}');
SELECT * FROM duet.upsert('users', '{"id": 1, "name": "Anna"}');
-- columns the row does not give keep their values
SELECT "row"->>'email' AS email, "row"->>'name' AS name, "row"->'tags' AS tags,
       "row"->'version' AS version, inserted
  FROM duet.upsert('users', '{"id": 1, "score": 2}');

-- conflict on another unique key
SELECT "row"->>'id' AS id, "row"->>'name' AS name, inserted
  FROM duet.upsert('users', '{"id": 1, "email": "a@x", "name": "By email"}',
                   conflict_columns => '{email}');
-- (NOT NULL is checked before conflicts, as for INSERT ... ON CONFLICT)
SELECT * FROM duet.upsert('users', '{"email": "a@x", "name": "No id"}',
                          conflict_columns => '{email}');
-- every given column outside the conflict target is updated, keys too
SELECT "row"->>'id' AS id, "row"->>'name' AS name, inserted
  FROM duet.upsert('users', '{"id": 99, "email": "b@x", "name": "B"}',
                   conflict_columns => '{email}');
SELECT "row"->>'id' AS id, "row"->>'name' AS name, inserted
  FROM duet.upsert('users', '{"id": 98, "email": "b@x", "name": "B2"}',
                   conflict_columns => '{email}');
SELECT id, email, name FROM users ORDER BY id;

-- update_columns limits what is overwritten
SELECT "row"->>'name' AS name, "row"->>'score' AS score, inserted
  FROM duet.upsert('users', '{"id": 1, "name": "Ignored", "score": 3}',
                   update_columns => '{score}');
-- an empty update_columns inserts or returns the existing row untouched
SELECT "row"->>'name' AS name, "row"->'version' AS version, inserted
  FROM duet.upsert('users', '{"id": 1, "name": "Ignored"}', update_columns => '{}');
SELECT "row"->>'name' AS name, inserted
  FROM duet.upsert('users', '{"id": 2, "name": "Bob"}', update_columns => '{}');

-- only_if_changed: an identical row is not written (version stays)
SELECT "row"->'version' AS version, inserted
  FROM duet.upsert('users', '{"id": 2, "name": "Bob"}', only_if_changed => true);
SELECT "row"->'version' AS version, inserted
  FROM duet.upsert('users', '{"id": 2, "name": "Bob"}', only_if_changed => true);
SELECT "row"->'version' AS version, "row"->>'name' AS name, inserted
  FROM duet.upsert('users', '{"id": 2, "name": "Bobby"}', only_if_changed => true);
-- null compares as a value: setting null is a change
SELECT "row"->'version' AS version, "row"->'name' AS name, inserted
  FROM duet.upsert('users', '{"id": 2, "name": null}', only_if_changed => true);
SELECT "row"->'version' AS version, inserted
  FROM duet.upsert('users', '{"id": 2, "name": null}', only_if_changed => true);

-- JSON values of every kind convert through the column's type
SELECT "row"->'score' AS score, "row"->'active' AS active, "row"->'attrs' AS attrs,
       "row"->'tags' AS tags
  FROM duet.upsert('users', '{"id": 3, "score": "12.50", "active": false,
                              "attrs": "just a string", "tags": []}');
SELECT "row"->'attrs' AS attrs, "row"->'tags' AS tags
  FROM duet.upsert('users', '{"id": 3, "attrs": null, "tags": ["x", null, "NULL"]}');
-- composite columns take the JSON object to_jsonb makes of them (nested,
-- in arrays, with quotes and backslashes), so a returned row goes back in
CREATE TYPE tagged AS (n int, label text, tags text[]);
CREATE TABLE shapes (id int PRIMARY KEY, t tagged, ts tagged[], js jsonb[]);
SELECT "row" FROM duet.upsert('shapes',
    '{"id": 1, "t": {"n": 1, "label": "a \"b\" \\ c", "tags": ["x", null]},
      "ts": [{"n": 2}, null, {"label": "only a label"}], "js": ["s", {"k": 1}, 2]}');
SELECT "row" = (SELECT "row" || '{"id": 2}' FROM shapes s, to_jsonb(s) AS "row" WHERE id = 1)
       AS same_row
  FROM duet.upsert('shapes', (SELECT to_jsonb(s) || '{"id": 2}' FROM shapes s WHERE id = 1));
SELECT t, ts FROM shapes ORDER BY id;
SELECT ordinality, "row"->'t' AS t, inserted
  FROM duet.upsert_many('shapes', '[{"id": 3, "t": {"n": 3}}, {"id": 1, "t": "(4,four,)"}]');
SELECT * FROM duet.upsert('shapes', '{"id": 5, "t": {"n": "five"}}');
-- the cached bulk statement names the column types with their schema, so
-- it still parses under a search_path that does not reach them
SELECT ordinality, "row"->'t' AS t FROM duet.upsert_many('shapes', '[{"id": 6, "t": {"n": 6}}]');
SET search_path = public;
SELECT ordinality, "row"->'t' AS t
  FROM duet.upsert_many('duet_ups.shapes', '[{"id": 6, "t": {"n": 7}}]');
SET search_path = duet_ups, public;
DROP TABLE shapes;
DROP TYPE tagged;

-- NULL arguments
SELECT duet.upsert(NULL, '{"id": 1}') IS NULL AS null_table,
       duet.upsert('users', NULL) IS NULL AS null_row;

-- identifiers are quoted everywhere
CREATE SCHEMA "Duet Ups";
CREATE TABLE "Duet Ups"."Odd Table" (
    "Key" int, "select" text, "a""b" int,
    CONSTRAINT odd_key UNIQUE ("select", "Key")
);
SELECT * FROM duet.upsert('"Duet Ups"."Odd Table"', '{"Key": 1, "select": "x", "a\"b": 1}',
                          conflict_columns => '{Key,select}');
SELECT * FROM duet.upsert('"Duet Ups"."Odd Table"', '{"Key": 1, "select": "x", "a\"b": 2}',
                          conflict_columns => '{select,Key}');
-- values are bound: text that looks like SQL is stored as it is
SELECT "row"->>'name' AS name
  FROM duet.upsert('users', '{"id": 4, "name": "x''); DROP TABLE users; --"}');

-- partitioned tables, and columns named like the statement's aliases
CREATE TABLE regional (id int, region text, t text, u text, "excluded" text,
                       PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE regional_eu PARTITION OF regional FOR VALUES IN ('eu');
CREATE TABLE regional_us PARTITION OF regional FOR VALUES IN ('us');
SELECT * FROM duet.upsert('regional', '{"id": 1, "region": "eu", "t": "a", "u": "b", "excluded": "c"}');
SELECT * FROM duet.upsert('regional', '{"id": 1, "region": "eu", "t": "x"}');
SELECT * FROM duet.upsert('regional', '{"id": 1, "region": "eu", "t": "x"}', only_if_changed => true);
SELECT * FROM duet.upsert_many('regional', '[{"id": 1, "region": "us", "t": "us"},
                                             {"id": 1, "region": "eu", "t": "y"},
                                             {"id": 2, "region": "eu", "t": "z"}]') ORDER BY ordinality;
SELECT tableoid::regclass AS part, id, region, t FROM regional ORDER BY region, id;

-- a trigger that upserts elsewhere does not confuse inserted and updated
CREATE TABLE audit (id int PRIMARY KEY, n int NOT NULL DEFAULT 1);
CREATE FUNCTION audit_it() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN
    PERFORM duet.upsert('duet_ups.audit', jsonb_build_object('id', NEW.id % 2, 'n', NEW.id));
    RETURN NEW;
END$$;
CREATE TRIGGER regional_audit BEFORE INSERT OR UPDATE ON regional_eu
    FOR EACH ROW EXECUTE FUNCTION audit_it();
SELECT ordinality, "row"->>'t' AS t, inserted
  FROM duet.upsert_many('regional', '[{"id": 3, "region": "eu", "t": "new"},
                                      {"id": 1, "region": "eu", "t": "upd"},
                                      {"id": 5, "region": "eu", "t": "new"}]') ORDER BY ordinality;
SELECT id, n FROM audit ORDER BY id;

--
-- errors: each names what is wrong, and nothing is written
--
\set VERBOSITY default
SELECT * FROM duet.upsert('users', '{"id": 1, "nmae": "x"}');
SELECT * FROM duet.upsert('users', '{"id": 1}', conflict_columns => '{nope}');
SELECT * FROM duet.upsert('users', '{"id": 1}', update_columns => '{nope}');
SELECT * FROM duet.upsert('users', '{"id": 1, "name": "x"}', conflict_columns => '{name}');
SELECT * FROM duet.upsert('users', '{"id": 1, "name": "x"}', conflict_columns => '{id,email}');
SELECT * FROM duet.upsert('users', '{"id": 1}', conflict_columns => '{id,NULL}');
SELECT * FROM duet.upsert('users', '[{"id": 1}]');
SELECT * FROM duet.upsert('users', '"id"');
SELECT * FROM duet.upsert('users', 'null');
SELECT * FROM duet.upsert('users', '7');
SELECT * FROM duet.upsert('users', 'true');
SELECT * FROM duet.upsert('users', '{}');
SELECT * FROM duet.upsert('users', '{"id": "one"}');
SELECT * FROM duet.upsert('users', '{"id": 1, "score": {"a": 1}}');
SELECT * FROM duet.upsert('users', '{"id": 1, "tags": "not an array"}');
SELECT * FROM duet.upsert('users', '{"id": 1e10}');
SELECT * FROM duet.upsert('users', '{"id": 1, "double_score": 4}');
SELECT * FROM duet.upsert('users', '{"id": 1}', update_columns => '{double_score}');
-- a domain's constraint is reported against the column
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE counters (id int PRIMARY KEY, n positive);
SELECT * FROM duet.upsert('counters', '{"id": 1, "n": -1}');
-- keys that ON CONFLICT cannot use are not offered
CREATE TABLE nokeys (a int, b int);
CREATE UNIQUE INDEX nokeys_partial ON nokeys (a) WHERE a > 0;
SELECT * FROM duet.upsert('nokeys', '{"a": 1}');
SELECT * FROM duet.upsert('nokeys', '{"a": 1}', conflict_columns => '{a}');
CREATE TABLE nopk (a int UNIQUE, b int);
SELECT * FROM duet.upsert('nopk', '{"a": 1}');
CREATE VIEW users_view AS SELECT * FROM users;
SELECT * FROM duet.upsert('users_view', '{"id": 1}');
-- a failure at execution (NOT NULL) leaves nothing behind
SELECT * FROM duet.upsert('users', '{"id": 1, "version": null}');
SELECT id, name, version FROM users ORDER BY id;

--
-- duet.upsert_many
--
CREATE TABLE items (id int PRIMARY KEY, sku text UNIQUE, qty int DEFAULT 0, note text);
-- rows giving different columns; results in input order
SELECT * FROM duet.upsert_many('items', '[
    {"id": 1, "sku": "a", "qty": 1},
    {"id": 2, "sku": "b"},
    {"id": 3, "sku": "c", "qty": 3},
    {"id": 4, "sku": "d", "note": "n"}
]') ORDER BY ordinality;
SELECT * FROM duet.upsert_many('items', '[
    {"id": 5, "sku": "e", "qty": 5},
    {"id": 1, "sku": "a", "qty": 10},
    {"id": 2, "note": "second"},
    {"id": 6, "sku": "f", "qty": 6}
]') ORDER BY ordinality;
-- only_if_changed: unchanged rows come back too, matched by key
SELECT ordinality, "row"->>'id' AS id, "row"->>'qty' AS qty, inserted
  FROM duet.upsert_many('items', '[
    {"id": 1, "qty": 10},
    {"id": 7, "qty": 7},
    {"id": 3, "qty": 30},
    {"id": 5, "qty": 5},
    {"qty": 0, "id": 8}
]', only_if_changed => true) ORDER BY ordinality;
-- conflict on sku, nothing updated: existing rows are returned as they are
SELECT ordinality, "row"->>'id' AS id, "row"->>'sku' AS sku, "row"->>'qty' AS qty, inserted
  FROM duet.upsert_many('items', '[
    {"id": 100, "sku": "b", "qty": 99},
    {"id": 9, "sku": "i", "qty": 9},
    {"id": 101, "sku": "a", "qty": 99}
]', conflict_columns => '{sku}', update_columns => '{}') ORDER BY ordinality;
-- return_rows => false: what was inserted, without the rows
SELECT ordinality, "row" IS NULL AS no_row, inserted
  FROM duet.upsert_many('items', '[{"id": 1, "qty": 10}, {"id": 10, "qty": 1}]',
                        return_rows => false) ORDER BY ordinality;
SELECT ordinality, "row" IS NULL AS no_row, inserted
  FROM duet.upsert_many('items', '[{"id": 1, "qty": 10}, {"id": 10, "qty": 2}, {"id": 11}]',
                        only_if_changed => true, return_rows => false) ORDER BY ordinality;
SELECT count(*) FROM duet.upsert_many('items', '[]');
SELECT count(*) FROM duet.upsert_many('items', NULL);
SELECT id, sku, qty, note FROM items ORDER BY id;
-- errors name the element; nothing is written
SELECT * FROM duet.upsert_many('items', '{"id": 1}');
SELECT * FROM duet.upsert_many('items', '[{"id": 50}, 1]');
SELECT * FROM duet.upsert_many('items', '[{"id": 50}, {"id": "x"}]');
SELECT * FROM duet.upsert_many('items', '[{"id": 50}, {"idd": 1}]');
SELECT * FROM duet.upsert_many('items', '[{"id": 50}, {}]');
-- a failure in the second statement undoes the first one
SELECT * FROM duet.upsert_many('items', '[{"id": 50, "qty": 1}, {"id": 51, "sku": "a"}]');
-- the same key twice with values to update is refused by ON CONFLICT itself
SELECT * FROM duet.upsert_many('items', '[{"id": 52, "qty": 1}, {"id": 52, "qty": 2}]');
SELECT count(*) AS none_written FROM items WHERE id >= 50;
-- with nothing to update, the second finds the first
SELECT * FROM duet.upsert_many('items', '[{"id": 52}, {"id": 52}]');

--
-- cached plans follow ALTER TABLE
--
SELECT "row" FROM duet.upsert('items', '{"id": 1, "qty": 11}');
ALTER TABLE items ADD COLUMN price numeric DEFAULT 0;
SELECT "row" FROM duet.upsert('items', '{"id": 1, "qty": 12, "price": 9.99}');
ALTER TABLE items DROP COLUMN note;
SELECT "row" FROM duet.upsert('items', '{"id": 1, "qty": 13}');
ALTER TABLE items ALTER COLUMN qty TYPE bigint;
SELECT "row" FROM duet.upsert('items', '{"id": 1, "qty": 9000000000}');
ALTER TABLE items RENAME COLUMN qty TO quantity;
SELECT "row" FROM duet.upsert('items', '{"id": 1, "quantity": 14}');
SELECT "row" FROM duet.upsert('items', '{"id": 1, "qty": 14}');
UPDATE items SET price = id;
CREATE UNIQUE INDEX items_price_key ON items (price);
SELECT "row" FROM duet.upsert('items', '{"id": 1, "price": 1}', conflict_columns => '{price}');
SELECT * FROM duet.upsert_many('items', '[{"id": 1, "quantity": 15}]');

--
-- privileges are the caller's
--
CREATE ROLE duet_ups_writer;
CREATE ROLE duet_ups_inserter;
GRANT USAGE ON SCHEMA duet_ups TO duet_ups_writer, duet_ups_inserter;
GRANT SELECT, INSERT, UPDATE (quantity) ON items TO duet_ups_writer;
GRANT SELECT, INSERT ON items TO duet_ups_inserter;
SET ROLE duet_ups_inserter;
-- no UPDATE privilege: no update through upsert
SELECT * FROM duet.upsert('items', '{"id": 1, "quantity": 20}');
SELECT * FROM duet.upsert_many('items', '[{"id": 1, "quantity": 20}]');
-- inserting, or returning the existing row, needs no UPDATE
SELECT "row"->>'quantity' AS quantity, inserted
  FROM duet.upsert('items', '{"id": 1, "quantity": 20}', update_columns => '{}');
SELECT "row"->>'quantity' AS quantity, inserted
  FROM duet.upsert('items', '{"id": 60, "quantity": 20}', update_columns => '{}');
RESET ROLE;
SET ROLE duet_ups_writer;
-- column privileges: quantity may be updated, sku may not
SELECT "row"->>'quantity' AS quantity, inserted
  FROM duet.upsert('items', '{"id": 1, "quantity": 21}');
SELECT * FROM duet.upsert('items', '{"id": 1, "sku": "zz"}');
RESET ROLE;
SELECT id, sku, quantity FROM items WHERE id IN (1, 60) ORDER BY id;

--
-- row-level security applies
--
CREATE TABLE notes (id int PRIMARY KEY, owner name NOT NULL DEFAULT current_user, body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_notes ON notes USING (owner = current_user);
GRANT SELECT, INSERT, UPDATE ON notes TO duet_ups_writer;
INSERT INTO notes VALUES (1, 'duet_ups_writer', 'mine'), (2, 'someone_else', 'theirs');
SET ROLE duet_ups_writer;
SELECT "row"->>'body' AS body, inserted
  FROM duet.upsert('notes', '{"id": 1, "body": "mine, edited"}');
-- a row the policy hides cannot be updated ...
SELECT * FROM duet.upsert('notes', '{"id": 2, "body": "stolen"}');
-- ... nor written for someone else
SELECT * FROM duet.upsert('notes', '{"id": 3, "owner": "someone_else", "body": "x"}');
-- ... nor read through a conflict
SELECT * FROM duet.upsert('notes', '{"id": 2, "body": "x"}', update_columns => '{}');
RESET ROLE;
SELECT id, owner, body FROM notes ORDER BY id;

RESET search_path;
DROP SCHEMA duet_ups CASCADE;
DROP SCHEMA "Duet Ups" CASCADE;
DROP ROLE duet_ups_writer;
DROP ROLE duet_ups_inserter;
