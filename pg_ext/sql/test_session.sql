-- test_session: force-rollback test sessions (test_session.c)

-- Test sessions are for the application's own roles, which must reach the
-- schema; functions that ordinary roles must not run are revoked one by one.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;

-- Not STRICT: a strict function called with NULL would return without
-- starting the session, and the test's writes would then be committed.
-- A null restore_sequences means false.
CREATE FUNCTION test_begin(restore_sequences boolean DEFAULT false)
RETURNS void
AS 'MODULE_PATHNAME', 'duet_test_begin'
LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION test_begin(boolean) IS
'starts a force-rollback test session on this connection; with restore_sequences, test_end puts sequences back';

CREATE FUNCTION test_end()
RETURNS void
AS 'MODULE_PATHNAME', 'duet_test_end'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION test_end() IS
'ends the test session, rolling back everything done since test_begin';

CREATE FUNCTION test_session(OUT active boolean, OUT since timestamptz,
                             OUT depth integer, OUT restore_sequences boolean)
RETURNS record
AS 'MODULE_PATHNAME', 'duet_test_session'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION test_session() IS
'whether a test session is active, since when, and the program''s own transaction nesting depth';

