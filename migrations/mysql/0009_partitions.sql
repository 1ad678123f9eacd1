-- Partitions: see the postgres file of the same version. A partition row's
-- name is the service's (64 bytes at most) with "#<p>/<N>" appended, so
-- the name columns grow to 80 bytes. Each statement can run again after a
-- crash (MySQL commits DDL implicitly).
ALTER TABLE {{prefix}}services
    MODIFY name VARBINARY(80) NOT NULL,
    ADD COLUMN IF NOT EXISTS partitions INT NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS parent VARBINARY(64) NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS part INT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS switch_to INT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS switch_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {{prefix}}services_parent ON {{prefix}}services (parent);

ALTER TABLE {{prefix}}retries ADD COLUMN IF NOT EXISTS slot INT NOT NULL DEFAULT -1;

CREATE TABLE IF NOT EXISTS {{prefix}}members (
    service    VARBINARY(64) NOT NULL,
    instance   VARBINARY(64) NOT NULL,
    seen_until BIGINT        NOT NULL,
    PRIMARY KEY (service, instance)
) ENGINE=InnoDB;
