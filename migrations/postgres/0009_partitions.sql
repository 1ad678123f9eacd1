-- Partitions (see partition.go). A service split into N > 1 partitions
-- keeps its own row (the base row: its name, partitions = N, standby
-- presence) and gets one row per partition, named "<service>#<p>/<N>",
-- with parent = the service and part = p: each partition row has its own
-- offset, lease and fence epoch, exactly as a service row has. With
-- partitions = 1 (the default) the base row is consumed as before and no
-- partition row exists. partitions is 0 on a partition row.
--
-- switch_to / switch_seq: a requested change of the partition count, and
-- the sequence number every partition of the current count drains to
-- before the new count takes effect (0: none requested).
ALTER TABLE {{prefix}}services ADD COLUMN IF NOT EXISTS partitions INT NOT NULL DEFAULT 1;
ALTER TABLE {{prefix}}services ADD COLUMN IF NOT EXISTS parent TEXT NOT NULL DEFAULT '';
ALTER TABLE {{prefix}}services ADD COLUMN IF NOT EXISTS part INT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}services ADD COLUMN IF NOT EXISTS switch_to INT NOT NULL DEFAULT 0;
ALTER TABLE {{prefix}}services ADD COLUMN IF NOT EXISTS switch_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS {{prefix}}services_parent ON {{prefix}}services (parent);

-- The slot of a retry row's sender (a hash of the sender modulo 1024,
-- computed by the bus): its partition is slot % N. -1 on rows stored
-- before this version; a count change fills them in.
ALTER TABLE {{prefix}}retries ADD COLUMN IF NOT EXISTS slot INT NOT NULL DEFAULT -1;

-- Live instances of each service, for sharing its partitions evenly.
CREATE TABLE IF NOT EXISTS {{prefix}}members (
    service    TEXT   NOT NULL,
    instance   TEXT   NOT NULL,
    seen_until BIGINT NOT NULL,
    PRIMARY KEY (service, instance)
);
