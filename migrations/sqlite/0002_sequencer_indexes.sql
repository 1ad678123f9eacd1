-- Inserting an event writes the table and no index: events_seq holds
-- numbered rows only (consumers read "seq > offset", which implies
-- seq IS NOT NULL), and the sequencer finds unnumbered rows by rowid, since
-- on SQLite they are exactly those above the highest-numbered row (see
-- sqliteDialect.unsequencedRange), so events_unsequenced goes.
DROP INDEX IF EXISTS {{prefix}}events_unsequenced;
DROP INDEX IF EXISTS {{prefix}}events_seq;
CREATE UNIQUE INDEX IF NOT EXISTS {{prefix}}events_seq ON {{prefix}}events (seq) WHERE seq IS NOT NULL;
