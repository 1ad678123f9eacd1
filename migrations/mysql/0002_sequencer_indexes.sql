-- events_seq becomes (seq, id), no longer unique. With a unique index on
-- seq, MariaDB sorts every NULL entry for the sequencer's
-- "seq IS NULL ORDER BY id LIMIT n" (or walks the primary key from the
-- oldest row), so each batch cost grew with the backlog; on (seq, id) the
-- NULL entries are read in id order and the scan stops at n. seq stays
-- unique by construction: the sequencer numbers, under its lock, only rows
-- whose seq is NULL, above last_seq. Re-running this statement after a
-- crash recreates the same index.
ALTER TABLE {{prefix}}events DROP INDEX {{prefix}}events_seq, ADD INDEX {{prefix}}events_seq (seq, id);
