-- Transactional messages and services, version 2 (see the sqlite file of
-- the same version for what each part is for).
--
-- token: a random number that, with the id, names a pending transaction in
-- the context DispatchBegin returns. A sequence value is never reused while
-- the server runs, but one taken by a transaction that never committed may
-- be handed out again after a crash.
ALTER TABLE {{prefix}}transactions ADD COLUMN IF NOT EXISTS token BIGINT NOT NULL DEFAULT 0;

-- standby_until: presence of running instances that do not hold the lease.
ALTER TABLE {{prefix}}services ADD COLUMN IF NOT EXISTS standby_until BIGINT NOT NULL DEFAULT 0;

-- The highest transaction id the cleaner removed, starting at the highest
-- id handed out before this migration.
CREATE TABLE IF NOT EXISTS {{prefix}}cleaned (
    id        INT    PRIMARY KEY,
    max_tx_id BIGINT NOT NULL
);
INSERT INTO {{prefix}}cleaned (id, max_tx_id)
SELECT 1, GREATEST(
    COALESCE((SELECT MAX(id) FROM {{prefix}}transactions), 0),
    COALESCE((SELECT last_value FROM pg_sequences
              WHERE format('%I.%I', schemaname, sequencename) = pg_get_serial_sequence('{{prefix}}transactions', 'id')), 0))
ON CONFLICT (id) DO NOTHING;
