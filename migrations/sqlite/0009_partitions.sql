-- Partitions: see the postgres file of the same version.
ALTER TABLE {{prefix}}services ADD COLUMN partitions INTEGER NOT NULL DEFAULT 1;
ALTER TABLE {{prefix}}services ADD COLUMN parent TEXT NOT NULL DEFAULT '';
ALTER TABLE {{prefix}}services ADD COLUMN part INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}services ADD COLUMN switch_to INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}services ADD COLUMN switch_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {{prefix}}services_parent ON {{prefix}}services (parent);

ALTER TABLE {{prefix}}retries ADD COLUMN slot INTEGER NOT NULL DEFAULT -1;

CREATE TABLE IF NOT EXISTS {{prefix}}members (
    service    TEXT    NOT NULL,
    instance   TEXT    NOT NULL,
    seen_until INTEGER NOT NULL,
    PRIMARY KEY (service, instance)
);
