-- Transaction age cleanup: settings, privileges and guards of
-- duet.cleanup_transactions(); the worker itself is exercised by the
-- isolation spec cleanup_worker.
SELECT name, setting, unit, context FROM pg_settings
 WHERE name IN ('duet.transaction_timeout', 'duet.cleanup_interval',
                'duet.cleanup_database', 'duet.cleanup_exempt_roles',
                'duet.cleanup_exempt_databases', 'duet.cleanup_exempt_applications',
                'duet.cleanup_superusers')
 ORDER BY name COLLATE "C";

-- the worker runs under shared_preload_libraries; starting another is a no-op
SELECT count(*) AS workers FROM pg_stat_activity WHERE backend_type = 'duet cleanup worker';
SELECT duet.start_cleanup_worker() = pid AS same_worker
  FROM pg_stat_activity WHERE backend_type = 'duet cleanup worker';

-- the settings are policy: ordinary sessions cannot change them
SET duet.transaction_timeout = '2s';
SET duet.cleanup_superusers = on;
-- units work in the configuration file
ALTER SYSTEM SET duet.cleanup_interval = '2s';
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SHOW duet.cleanup_interval;
ALTER SYSTEM RESET duet.cleanup_interval;
SELECT pg_reload_conf();
SELECT pg_sleep(0.2);
SHOW duet.cleanup_interval;

-- an unprivileged role cannot use cleanup_transactions on others
CREATE ROLE duet_cleanup_plain;
CREATE ROLE duet_cleanup_signaller IN ROLE pg_signal_backend;
SET ROLE duet_cleanup_plain;
SELECT * FROM duet.cleanup_transactions('1s', dry_run => false);
SELECT * FROM duet.cleanup_log();
SELECT duet.start_cleanup_worker();
SELECT duet.cleanup_log_reset();
RESET ROLE;

-- members of pg_signal_backend may; arguments are checked
SET ROLE duet_cleanup_signaller;
SELECT count(*) FROM duet.cleanup_transactions('1 day');
SELECT count(*) FROM duet.cleanup_transactions('1 day', false);
SELECT count(*) >= 0 AS readable FROM duet.cleanup_log();
SELECT * FROM duet.cleanup_transactions(NULL);
SELECT * FROM duet.cleanup_transactions('-1 second');
RESET ROLE;

-- its own transaction is never a candidate, however old
BEGIN;
SELECT pg_sleep(0.05);
SELECT count(*) FROM duet.cleanup_transactions('0', dry_run => true)
 WHERE pid = pg_backend_pid();
COMMIT;

DROP ROLE duet_cleanup_plain;
DROP ROLE duet_cleanup_signaller;
