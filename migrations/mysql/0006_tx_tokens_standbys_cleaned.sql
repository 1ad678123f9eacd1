-- Transactional messages and services, version 2 (see the sqlite file of
-- the same version for what each part is for).
--
-- MySQL commits each DDL statement on its own and MySQL 8 has no
-- "ADD COLUMN IF NOT EXISTS", so each column is added only if it is
-- missing: the file runs again safely after a crash half-way.
--
-- token: a random number that, with the id, names a pending transaction in
-- the context DispatchBegin returns. InnoDB never reuses an auto-increment
-- value while the server runs, nor after a clean restart (MySQL 8, MariaDB
-- 10.2.4+), but one taken by a transaction that never committed may be
-- handed out again after a crash.
SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE {{prefix}}transactions ADD COLUMN token BIGINT NOT NULL DEFAULT 0', 'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}transactions' AND column_name = 'token');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

-- standby_until: presence of running instances that do not hold the lease.
SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE {{prefix}}services ADD COLUMN standby_until BIGINT NOT NULL DEFAULT 0', 'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}services' AND column_name = 'standby_until');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

-- The highest transaction id the cleaner removed, starting at the highest
-- id handed out before this migration (information_schema may report an
-- older counter on MySQL 8, never a newer one; MAX(id) bounds it below).
CREATE TABLE IF NOT EXISTS {{prefix}}cleaned (
    id        INT    NOT NULL,
    max_tx_id BIGINT NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB;
INSERT IGNORE INTO {{prefix}}cleaned (id, max_tx_id)
SELECT 1, GREATEST(
    COALESCE((SELECT MAX(id) FROM {{prefix}}transactions), 0),
    COALESCE((SELECT AUTO_INCREMENT - 1 FROM information_schema.tables
              WHERE table_schema = DATABASE() AND table_name = '{{prefix}}transactions'), 0));
