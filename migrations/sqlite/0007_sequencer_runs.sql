-- SQLite needs no runs (the PostgreSQL and MySQL migrations 0007 add them):
-- its unnumbered rows are those above the highest-numbered one, and no
-- snapshot keeps numbered rows in an index. What changes is the batch: one
-- statement instead of a transaction of several (see sqliteDialect), so
-- that the sequencer holds the write lock only while SQLite executes it.
-- This trigger keeps last_seq at the highest number given, inside the
-- statement that gives it.
DELIMITER //
CREATE TRIGGER IF NOT EXISTS {{prefix}}events_last_seq AFTER UPDATE OF seq ON {{prefix}}events
WHEN NEW.seq IS NOT NULL
BEGIN
    UPDATE {{prefix}}sequencer SET last_seq = NEW.seq WHERE id = 1 AND last_seq < NEW.seq;
END //
DELIMITER ;
