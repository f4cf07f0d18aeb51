-- cleanup_worker: transaction age cleanup (cleanup_worker.c)

CREATE FUNCTION cleanup_transactions(max_age interval, dry_run boolean DEFAULT true,
    OUT pid integer, OUT usename name, OUT datname name,
    OUT application_name text, OUT xact_start timestamptz, OUT age interval,
    OUT query text, OUT action text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'duet_cleanup_transactions'
LANGUAGE C CALLED ON NULL INPUT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cleanup_transactions(interval, boolean) IS
'terminates client backends whose transaction is older than max_age (only lists them when dry_run)';

REVOKE ALL ON FUNCTION cleanup_transactions(interval, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cleanup_transactions(interval, boolean) TO pg_signal_backend;

CREATE FUNCTION cleanup_log(OUT logged_at timestamptz, OUT source text,
    OUT action text, OUT pid integer, OUT usename name, OUT datname name,
    OUT application_name text, OUT xact_start timestamptz, OUT age interval,
    OUT query text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'duet_cleanup_log'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION cleanup_log() IS
'the last backends ended by the cleanup worker or cleanup_transactions, oldest first';

REVOKE ALL ON FUNCTION cleanup_log() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cleanup_log() TO pg_signal_backend, pg_read_all_stats;

CREATE FUNCTION cleanup_log_reset()
RETURNS bigint
AS 'MODULE_PATHNAME', 'duet_cleanup_log_reset'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

REVOKE ALL ON FUNCTION cleanup_log_reset() FROM PUBLIC;

CREATE FUNCTION start_cleanup_worker()
RETURNS integer
AS 'MODULE_PATHNAME', 'duet_start_cleanup_worker'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION start_cleanup_worker() IS
'starts the transaction age cleanup worker on a cluster without shared_preload_libraries=duet';

REVOKE ALL ON FUNCTION start_cleanup_worker() FROM PUBLIC;

