-- The sequencer, version 3 (see sequencer.go): stored procedures, so that
-- a batch is one round trip that runs at READ COMMITTED whatever the
-- session's default and commits inside the server (a client frozen after
-- sending the call holds no lock), and runs, so that its cost no longer
-- grows with what was numbered while a long snapshot holds back purge.
--
-- Runs (as in the PostgreSQL migration 0007): the ranges of ids that may
-- still hold a row to number, namely the ids not examined yet (the open
-- run, hi NULL, above every id numbered) and the holes batches left behind
-- (ids with no committed row when a batch passed them: rows of open
-- transactions, rolled back or never used). A poll looks in these ranges
-- only, instead of walking the delete-marked NULL entries of events_seq
-- that numbering leaves until purge removes them. The list is written
-- whole under a new version by each batch that changes it, and read at its
-- highest version through the primary key. created_at (database clock,
-- seconds) is when a hole appeared; for the open run, when the log below
-- it was last swept.
--
-- The routines run with the caller's rights (SQL SECURITY INVOKER), so
-- they keep working if the user that ran the migration is dropped. Range
-- UPDATEs go through the primary key: at READ COMMITTED InnoDB then skips
-- rows of open transactions (semi-consistent read) instead of waiting for
-- them, as it would through a secondary index. Every MySQL statement here
-- re-runs safely after a crash (DDL commits implicitly).
CREATE TABLE IF NOT EXISTS {{prefix}}sequencer_runs (
    version    BIGINT NOT NULL,
    lo         BIGINT NOT NULL,
    hi         BIGINT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (version, lo)
) ENGINE=InnoDB;
-- At first every id is unexamined: the first batch splits this run.
INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at)
SELECT 1, 1, NULL, 0 FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM {{prefix}}sequencer_runs);

DROP PROCEDURE IF EXISTS {{prefix}}sequence_pending;
DROP PROCEDURE IF EXISTS {{prefix}}sequence_step;
DROP PROCEDURE IF EXISTS {{prefix}}sequence;
DROP PROCEDURE IF EXISTS {{prefix}}register_service;
DROP PROCEDURE IF EXISTS {{prefix}}sequence_tidy;

DELIMITER //

-- Whether a committed row waits for a number in the current runs (each
-- run costs an index probe). A plain read: it takes no lock.
CREATE PROCEDURE {{prefix}}sequence_pending(OUT pending BOOLEAN)
    SQL SECURITY INVOKER
BEGIN
    SELECT EXISTS (
        SELECT 1 FROM {{prefix}}sequencer_runs r
         WHERE r.version = (SELECT MAX(version) FROM {{prefix}}sequencer_runs)
           AND EXISTS (SELECT 1 FROM {{prefix}}events e FORCE INDEX ({{prefix}}events_seq)
                        WHERE e.seq IS NULL AND e.id >= r.lo AND e.id <= COALESCE(r.hi, 9223372036854775807)))
      INTO pending;
END //

-- One batch, in the caller's transaction, which must run at READ
-- COMMITTED, with the session's temporary table {{prefix}}sequencer_ids
-- (see sequence). It locks the sequencer row, then picks, in one statement
-- (one snapshot), the first batch_size committed unnumbered ids of the
-- runs in id order, numbers exactly those, seq = id + delta with delta
-- putting the first at last_seq + 1, and writes the runs left: a picked id
-- leaves its run, and the open run now starts above the last one picked.
-- As the pick is one snapshot and complete below its last id, a row is
-- never numbered before a row that had committed before its transaction
-- began, nor before a lower row of its own transaction. The pick is a
-- consistent read (no locks at READ COMMITTED) and the UPDATE finds the
-- picked rows, all committed, through the primary key.
CREATE PROCEDURE {{prefix}}sequence_step(IN batch_size INT, OUT numbered BIGINT, OUT more BOOLEAN)
    SQL SECURITY INVOKER
BEGIN
    DECLARE v_last, v_ver, v_top, v_first, v_end BIGINT;
    DECLARE v_now BIGINT DEFAULT UNIX_TIMESTAMP();
    DECLARE v_skip INT DEFAULT batch_size - 1;
    SET numbered = 0, more = FALSE;
    SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
    SELECT MAX(version) INTO v_ver FROM {{prefix}}sequencer_runs;
    SELECT lo INTO v_top FROM {{prefix}}sequencer_runs WHERE version = v_ver AND hi IS NULL;
    DELETE FROM {{prefix}}sequencer_ids;
    -- The open run is read up to its batch_size-th unnumbered id, so that
    -- the sort below never holds a whole backlog.
    INSERT INTO {{prefix}}sequencer_ids (id, run_lo)
    SELECT e.id, r.lo
      FROM {{prefix}}sequencer_runs r
      JOIN {{prefix}}events e FORCE INDEX ({{prefix}}events_seq)
        ON e.seq IS NULL AND e.id >= r.lo
       AND e.id <= COALESCE(r.hi,
                            (SELECT t.id FROM {{prefix}}events t FORCE INDEX ({{prefix}}events_seq)
                              WHERE t.seq IS NULL AND t.id >= v_top ORDER BY t.id LIMIT v_skip, 1),
                            9223372036854775807)
     WHERE r.version = v_ver
     ORDER BY e.id LIMIT batch_size;
    SELECT MIN(id), MAX(id) INTO v_first, v_end FROM {{prefix}}sequencer_ids;
    IF v_first IS NOT NULL THEN
        UPDATE {{prefix}}sequencer_ids p STRAIGHT_JOIN {{prefix}}events e ON e.id = p.id
           SET e.seq = e.id + v_last + 1 - v_first
         WHERE e.seq IS NULL;
        SET numbered = ROW_COUNT();
        UPDATE {{prefix}}sequencer SET last_seq = v_end + v_last + 1 - v_first WHERE id = 1;
        -- The runs left: each run cut at its picked ids, bounded by lo - 1
        -- and hi + 1 (a run without picks comes out whole). Holes cut from
        -- the open run are new; pieces of a hole keep its age.
        INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at)
        SELECT v_ver + 1, g.lo, g.hi, IF(g.run_hi IS NULL AND g.hi IS NOT NULL, v_now, g.made)
          FROM (SELECT r.hi AS run_hi, r.created_at AS made, c.p + 1 AS lo,
                       LEAD(c.p) OVER (PARTITION BY r.lo ORDER BY c.p) - 1 AS hi
                  FROM (SELECT run_lo, id AS p FROM {{prefix}}sequencer_ids
                        UNION ALL
                        SELECT lo, lo - 1 FROM {{prefix}}sequencer_runs WHERE version = v_ver
                        UNION ALL
                        SELECT lo, hi + 1 FROM {{prefix}}sequencer_runs WHERE version = v_ver AND hi IS NOT NULL) c
                  JOIN {{prefix}}sequencer_runs r ON r.version = v_ver AND r.lo = c.run_lo) g
         WHERE (g.hi IS NULL AND g.run_hi IS NULL) OR g.lo <= g.hi;
        DELETE FROM {{prefix}}sequencer_runs WHERE version <= v_ver;
    END IF;
    CALL {{prefix}}sequence_pending(more);
END //

-- The sequencer's call: one round trip, returning one row (numbered,
-- more). A poll with nothing to number only reads; otherwise the batch
-- runs at READ COMMITTED and commits here, inside the server. An error
-- rolls the transaction back before it reaches the client, so that no
-- connection goes back to the pool holding the lock.
CREATE PROCEDURE {{prefix}}sequence(IN batch_size INT)
    SQL SECURITY INVOKER
BEGIN
    DECLARE v_pending, v_more BOOLEAN DEFAULT FALSE;
    DECLARE v_n BIGINT DEFAULT 0;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    CALL {{prefix}}sequence_pending(v_pending);
    IF v_pending THEN
        CREATE TEMPORARY TABLE IF NOT EXISTS {{prefix}}sequencer_ids (id BIGINT NOT NULL PRIMARY KEY, run_lo BIGINT NULL) ENGINE = MEMORY;
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
        START TRANSACTION;
        CALL {{prefix}}sequence_step(batch_size, v_n, v_more);
        COMMIT;
    END IF;
    SELECT v_n AS numbered, v_more AS more;
END //

-- Registers service p_name unless it exists, in one call, returning one
-- row (registered). p_start >= 0 is its offset; below 0 means the latest
-- position: everything committed so far is numbered first (batch by batch,
-- then the rest under the lock) and the offset is the last number, set in
-- the transaction that holds the lock, so that exactly the events
-- committed after this call reach the service.
CREATE PROCEDURE {{prefix}}register_service(IN p_name VARBINARY(64), IN p_start BIGINT, IN p_now BIGINT,
                                            IN batch_size INT)
    SQL SECURITY INVOKER
BEGIN
    DECLARE v_pending, v_more BOOLEAN DEFAULT FALSE;
    DECLARE v_registered BOOLEAN DEFAULT FALSE;
    DECLARE v_n, v_last BIGINT;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    SELECT NOT EXISTS (SELECT 1 FROM {{prefix}}services WHERE name = p_name) INTO v_pending;
    IF v_pending THEN
        CREATE TEMPORARY TABLE IF NOT EXISTS {{prefix}}sequencer_ids (id BIGINT NOT NULL PRIMARY KEY, run_lo BIGINT NULL) ENGINE = MEMORY;
        IF p_start < 0 THEN
            ahead: LOOP
                SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
                CALL {{prefix}}sequence_pending(v_pending);
                IF NOT v_pending THEN
                    LEAVE ahead;
                END IF;
                SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
                START TRANSACTION;
                CALL {{prefix}}sequence_step(batch_size, v_n, v_more);
                COMMIT;
                IF NOT v_more THEN
                    LEAVE ahead;
                END IF;
            END LOOP;
        END IF;
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
        START TRANSACTION;
        SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
        IF p_start < 0 THEN
            CALL {{prefix}}sequence_pending(v_pending);
            WHILE v_pending DO
                CALL {{prefix}}sequence_step(batch_size, v_n, v_pending);
            END WHILE;
        END IF;
        INSERT IGNORE INTO {{prefix}}services (name, consumed_seq, owner, epoch, version, lease_until, created_at, updated_at)
        SELECT p_name, IF(p_start < 0, last_seq, p_start), '', 0, 0, 0, p_now, p_now
          FROM {{prefix}}sequencer WHERE id = 1;
        SET v_registered = ROW_COUNT() > 0;
        COMMIT;
    END IF;
    SELECT v_registered AS registered;
END //

-- Upkeep of the runs, every few seconds from each instance; it changes
-- them only under the sequencer's lock, and only if no batch did
-- meanwhile, returning one row (changed). A hole is given up when no row
-- can come to it any more (settled: a dirty read finds no row at all, not
-- even one of an open transaction, and it is older than settle_after
-- seconds, the margin for an id taken by an INSERT not yet written), or
-- when it is older than expire_after seconds; never while it holds a
-- committed row. A row that comes later to a hole given up is found by the
-- sweep: every sweep_every seconds one instance walks the NULL entries of
-- events_seq below the open run (at the cost of those delete-marked) and
-- puts any committed row no run holds back into a run of its own. The
-- holes to give up are passed from the dirty read to the locked
-- transaction in the session's temporary table sequencer_ids.
CREATE PROCEDURE {{prefix}}sequence_tidy(IN settle_after BIGINT, IN expire_after BIGINT, IN sweep_every BIGINT, IN batch_size INT)
    SQL SECURITY INVOKER
BEGIN
    DECLARE v_ver, v_top, v_swept, v_last, v_lost BIGINT;
    DECLARE v_now BIGINT DEFAULT UNIX_TIMESTAMP();
    DECLARE v_sweep, v_found, v_gone BOOLEAN DEFAULT FALSE;
    DECLARE v_changed BOOLEAN DEFAULT FALSE;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    SELECT version, lo, created_at INTO v_ver, v_top, v_swept FROM {{prefix}}sequencer_runs
     WHERE version = (SELECT MAX(version) FROM {{prefix}}sequencer_runs) AND hi IS NULL;
    SET v_sweep = v_now - v_swept >= sweep_every;
    IF v_sweep THEN
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
        SELECT EXISTS (
            SELECT 1 FROM {{prefix}}events e FORCE INDEX ({{prefix}}events_seq)
             WHERE e.seq IS NULL AND e.id < v_top
               AND NOT EXISTS (SELECT 1 FROM {{prefix}}sequencer_runs r
                                WHERE r.version = v_ver AND e.id >= r.lo AND e.id <= COALESCE(r.hi, 9223372036854775807)))
          INTO v_found;
    END IF;
    CREATE TEMPORARY TABLE IF NOT EXISTS {{prefix}}sequencer_ids (id BIGINT NOT NULL PRIMARY KEY, run_lo BIGINT NULL) ENGINE = MEMORY;
    DELETE FROM {{prefix}}sequencer_ids;
    SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED;
    START TRANSACTION;
    INSERT INTO {{prefix}}sequencer_ids (id)
    SELECT r.lo FROM {{prefix}}sequencer_runs r
     WHERE r.version = v_ver AND r.hi IS NOT NULL
       AND (r.created_at <= v_now - expire_after
            OR (r.created_at <= v_now - settle_after
                AND NOT EXISTS (SELECT 1 FROM {{prefix}}events e FORCE INDEX (PRIMARY)
                                 WHERE e.id >= r.lo AND e.id <= r.hi AND e.seq IS NULL)));
    SET v_gone = ROW_COUNT() > 0;
    COMMIT;
    IF v_sweep OR v_gone THEN
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
        START TRANSACTION;
        SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
        IF (SELECT MAX(version) FROM {{prefix}}sequencer_runs) = v_ver THEN
            SET v_lost = 0;
            IF v_found THEN
                INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at)
                SELECT v_ver + 1, x.id, x.id, v_now FROM (
                    SELECT e.id FROM {{prefix}}events e FORCE INDEX ({{prefix}}events_seq)
                     WHERE e.seq IS NULL AND e.id < v_top
                       AND NOT EXISTS (SELECT 1 FROM {{prefix}}sequencer_runs r
                                        WHERE r.version = v_ver AND e.id >= r.lo AND e.id <= COALESCE(r.hi, 9223372036854775807))
                     ORDER BY e.id LIMIT batch_size) x;
                SET v_lost = ROW_COUNT();
            END IF;
            -- A hole given up must hold no committed row; the open run
            -- records the sweep unless it stopped at batch_size rows.
            INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at)
            SELECT v_ver + 1, r.lo, r.hi, IF(r.hi IS NULL AND v_sweep AND v_lost < batch_size, v_now, r.created_at)
              FROM {{prefix}}sequencer_runs r
             WHERE r.version = v_ver
               AND NOT (r.lo IN (SELECT g.id FROM {{prefix}}sequencer_ids g)
                        AND NOT EXISTS (SELECT 1 FROM {{prefix}}events e FORCE INDEX ({{prefix}}events_seq)
                                         WHERE e.seq IS NULL AND e.id >= r.lo AND e.id <= r.hi));
            DELETE FROM {{prefix}}sequencer_runs WHERE version <= v_ver;
            SET v_changed = v_lost > 0 OR v_gone;
        END IF;
        COMMIT;
    END IF;
    SELECT v_changed AS changed;
END //

DELIMITER ;
