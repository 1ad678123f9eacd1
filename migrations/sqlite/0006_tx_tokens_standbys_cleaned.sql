-- Transactional messages and services, version 2.
--
-- token: a random number drawn by DispatchBegin and carried, with the id,
-- in the context it returns. Commit(ctx) and Rollback(ctx) resolve a row
-- only if both match, so a context resolves only the transaction it began.
-- (SQLite's AUTOINCREMENT counter is part of the transaction that takes a
-- value, so the id of a pending transaction whose business transaction
-- rolled back is handed out again; ids of committed rows never are.)
-- Rows written before this migration keep token 0: they are resolved by id
-- (CommitTransaction, RollbackTransaction) or by the TX checker.
ALTER TABLE {{prefix}}transactions ADD COLUMN token INTEGER NOT NULL DEFAULT 0;

-- standby_until: renewed by every running instance that does not hold the
-- lease, so RemoveService can refuse while one runs; it lapses
-- LeaseDuration after the last standby stops or dies.
ALTER TABLE {{prefix}}services ADD COLUMN standby_until INTEGER NOT NULL DEFAULT 0;

-- The highest transaction id the cleaner removed: a transaction that is not
-- found, with an id at or below it, may have been resolved and cleaned, so
-- Commit and Rollback cannot say it never existed. It starts at the highest
-- id handed out before this migration (earlier cleanings were not recorded).
CREATE TABLE IF NOT EXISTS {{prefix}}cleaned (
    id        INTEGER PRIMARY KEY,
    max_tx_id INTEGER NOT NULL
);
INSERT OR IGNORE INTO {{prefix}}cleaned (id, max_tx_id)
    VALUES (1, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{{prefix}}transactions'), 0));
