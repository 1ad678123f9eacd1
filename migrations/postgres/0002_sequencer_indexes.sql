-- events_seq holds numbered rows only: an event is inserted with seq NULL,
-- and a NULL entry in this index would be one more index write per event
-- for nothing (the sequencer finds unnumbered rows with events_unsequenced;
-- consumers read "seq > offset", which implies seq IS NOT NULL).
DROP INDEX IF EXISTS {{prefix}}events_seq;
CREATE UNIQUE INDEX IF NOT EXISTS {{prefix}}events_seq ON {{prefix}}events (seq) WHERE seq IS NOT NULL;
