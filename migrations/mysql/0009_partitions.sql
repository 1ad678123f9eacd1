-- Partitions: see the postgres file of the same version. A partition row's
-- name is the service's (64 bytes at most) with "#<p>/<N>" appended, so
-- the name column grows to 80 bytes. MySQL 8 has no ADD COLUMN IF NOT
-- EXISTS: each addition looks in information_schema first (as 0006), so
-- that every statement can run again after a crash (DDL commits implicitly).
ALTER TABLE {{prefix}}services MODIFY name VARBINARY(80) NOT NULL;

SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE {{prefix}}services ADD COLUMN partitions INT NOT NULL DEFAULT 1', 'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}services' AND column_name = 'partitions');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE {{prefix}}services ADD COLUMN parent VARBINARY(64) NOT NULL DEFAULT ''''', 'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}services' AND column_name = 'parent');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE {{prefix}}services ADD COLUMN part INT NOT NULL DEFAULT 0', 'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}services' AND column_name = 'part');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE {{prefix}}services ADD COLUMN switch_to INT NOT NULL DEFAULT 0', 'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}services' AND column_name = 'switch_to');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE {{prefix}}services ADD COLUMN switch_seq BIGINT NOT NULL DEFAULT 0', 'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}services' AND column_name = 'switch_seq');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'ALTER TABLE {{prefix}}retries ADD COLUMN slot INT NOT NULL DEFAULT -1', 'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}retries' AND column_name = 'slot');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

SET @eventbus_ddl = (SELECT IF(COUNT(*) = 0,
    'CREATE INDEX {{prefix}}services_parent ON {{prefix}}services (parent)', 'DO 0')
    FROM information_schema.statistics
    WHERE table_schema = DATABASE() AND table_name = '{{prefix}}services' AND index_name = '{{prefix}}services_parent');
PREPARE eventbus_ddl FROM @eventbus_ddl;
EXECUTE eventbus_ddl;
DEALLOCATE PREPARE eventbus_ddl;

CREATE TABLE IF NOT EXISTS {{prefix}}members (
    service    VARBINARY(64) NOT NULL,
    instance   VARBINARY(64) NOT NULL,
    seen_until BIGINT        NOT NULL,
    PRIMARY KEY (service, instance)
) ENGINE=InnoDB;
