-- The sequencer, version 4: what 0007 does, at the cost it had before
-- when no long snapshot is open and few holes exist.
--
-- Every range is now read through events_seq, each by a statement of its
-- own whose bounds the optimizer sees as constants. In 0007 the batch
-- joined the runs to the primary key, so a hole cost every row in it,
-- numbered or not: the hole below the first batch after an upgrade (or
-- below rows written with their seq) spans the whole log, and each batch
-- read it all until tidy dropped it. Through events_seq a range costs its
-- unnumbered entries, those delete-marked behind an old snapshot included,
-- which a hole (ids that had no committed row when a batch passed them)
-- and the open run (above every id numbered) hold few of.
--
-- One snapshot per statement (READ COMMITTED), yet the order holds: the
-- open run is read first, then the holes from the highest down, so a range
-- is read at a snapshot no older than that of any range above it. A row
-- that committed before the transaction of a picked row began has a lower
-- id (ids are taken inside transactions) and committed before that pick's
-- snapshot, so the later read of its range sees it, and it sorts before.
-- The lowest batch_size ids read are numbered.
--
-- The old version of the runs is deleted by its number (version = v_ver),
-- not as every version up to it: that range began at the start of the
-- primary key and walked the delete-marked entries of every version
-- replaced before, which stay until purge, and behind a long snapshot for
-- good. Only the current version is ever left: each writer deletes it
-- with the one it replaces. A batch that needs no hole and skips no id
-- writes the runs left directly (no window function).
--
-- The picked ids go through a new temporary table, sequencer_pick, with a
-- BTREE key (MEMORY's default, HASH, sorts on every ordered read); the
-- sessions' sequencer_ids of 0007 are left alone. Procedure names and
-- parameters are those of 0007.
DROP PROCEDURE IF EXISTS {{prefix}}sequence_step;
DROP PROCEDURE IF EXISTS {{prefix}}sequence;
DROP PROCEDURE IF EXISTS {{prefix}}register_service;
DROP PROCEDURE IF EXISTS {{prefix}}sequence_tidy;

DELIMITER //

-- One batch, in the caller's transaction, which must run at READ
-- COMMITTED, with the session's temporary table {{prefix}}sequencer_pick
-- (see sequence). It locks the sequencer row, reads the runs as described
-- above, numbers the lowest batch_size ids found, seq = id + delta with
-- delta putting the first at last_seq + 1, and writes the runs left: a
-- picked id leaves its run, and the open run now starts above the last
-- one picked. The reads take no locks; the UPDATE finds the picked rows,
-- all committed, through the primary key. more: it numbered batch_size
-- rows, so more may wait.
CREATE PROCEDURE {{prefix}}sequence_step(IN batch_size INT, OUT numbered BIGINT, OUT more BOOLEAN)
    SQL SECURITY INVOKER
BEGIN
    DECLARE v_last, v_ver, v_top, v_made, v_cut, v_first, v_end, v_lo, v_hi, v_n BIGINT;
    DECLARE v_holes BOOLEAN DEFAULT FALSE;
    DECLARE v_now BIGINT DEFAULT UNIX_TIMESTAMP();
    SET numbered = 0, more = FALSE;
    SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
    SELECT MAX(version) INTO v_ver FROM {{prefix}}sequencer_runs;
    SELECT lo, created_at INTO v_top, v_made FROM {{prefix}}sequencer_runs WHERE version = v_ver AND hi IS NULL;
    DELETE FROM {{prefix}}sequencer_pick;
    INSERT INTO {{prefix}}sequencer_pick (id, run_lo)
    SELECT id, v_top FROM {{prefix}}events FORCE INDEX ({{prefix}}events_seq)
     WHERE seq IS NULL AND id >= v_top ORDER BY id LIMIT batch_size;
    SET v_hi = v_top;
    holes: LOOP
        SET v_lo = NULL;
        SELECT lo, hi INTO v_lo, v_hi FROM {{prefix}}sequencer_runs
         WHERE version = v_ver AND lo < v_hi ORDER BY lo DESC LIMIT 1;
        IF v_lo IS NULL THEN
            LEAVE holes;
        END IF;
        INSERT INTO {{prefix}}sequencer_pick (id, run_lo)
        SELECT id, v_lo FROM {{prefix}}events FORCE INDEX ({{prefix}}events_seq)
         WHERE seq IS NULL AND id >= v_lo AND id <= v_hi ORDER BY id LIMIT batch_size;
        SET v_hi = v_lo, v_holes = TRUE;
    END LOOP;
    -- Holes may have brought more than batch_size: keep the lowest.
    IF v_holes THEN
        SET v_cut = NULL;
        SELECT id INTO v_cut FROM {{prefix}}sequencer_pick ORDER BY id LIMIT batch_size, 1;
        IF v_cut IS NOT NULL THEN
            DELETE FROM {{prefix}}sequencer_pick WHERE id >= v_cut;
        END IF;
    END IF;
    SELECT MIN(id), MAX(id), COUNT(*) INTO v_first, v_end, v_n FROM {{prefix}}sequencer_pick;
    IF v_first IS NOT NULL THEN
        UPDATE {{prefix}}sequencer_pick p STRAIGHT_JOIN {{prefix}}events e ON e.id = p.id
           SET e.seq = e.id + v_last + 1 - v_first
         WHERE e.seq IS NULL;
        SET numbered = ROW_COUNT();
        UPDATE {{prefix}}sequencer SET last_seq = v_end + v_last + 1 - v_first WHERE id = 1;
        -- The runs left. The common case, no hole and no id skipped between
        -- the picked ones, is written directly: the open run above the last
        -- one picked, and the hole below the first, if any.
        IF NOT v_holes AND v_end - v_first + 1 = v_n THEN
            INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at)
            VALUES (v_ver + 1, v_end + 1, NULL, v_made);
            IF v_first > v_top THEN
                INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at)
                VALUES (v_ver + 1, v_top, v_first - 1, v_now);
            END IF;
        ELSE
            -- Otherwise each run is cut at its picked ids, bounded by lo - 1
            -- and hi + 1 (a run without picks comes out whole). Holes cut from
            -- the open run are new; pieces of a hole keep its age.
            INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at)
            SELECT v_ver + 1, g.lo, g.hi, IF(g.run_hi IS NULL AND g.hi IS NOT NULL, v_now, g.made)
              FROM (SELECT r.hi AS run_hi, r.created_at AS made, c.p + 1 AS lo,
                           LEAD(c.p) OVER (PARTITION BY r.lo ORDER BY c.p) - 1 AS hi
                      FROM (SELECT run_lo, id AS p FROM {{prefix}}sequencer_pick
                            UNION ALL
                            SELECT lo, lo - 1 FROM {{prefix}}sequencer_runs WHERE version = v_ver
                            UNION ALL
                            SELECT lo, hi + 1 FROM {{prefix}}sequencer_runs WHERE version = v_ver AND hi IS NOT NULL) c
                      JOIN {{prefix}}sequencer_runs r ON r.version = v_ver AND r.lo = c.run_lo) g
             WHERE (g.hi IS NULL AND g.run_hi IS NULL) OR g.lo <= g.hi;
        END IF;
        DELETE FROM {{prefix}}sequencer_runs WHERE version = v_ver;
    END IF;
    SET more = numbered >= batch_size;
END //

-- The sequencer's call: one round trip, returning one row (numbered,
-- more), in a transaction at READ COMMITTED that commits here, inside the
-- server. It first reads, without a lock, whether a committed row waits in
-- the runs: the open run (the highest lo) through events_seq from its
-- start, where no entry was ever numbered, then each hole with a probe of
-- its own whose bounds the optimizer sees as constants; only then does it
-- run the batch. An error rolls the transaction back before it reaches the
-- client, so that no connection goes back to the pool holding the lock.
-- The picked ids go through a temporary table of the session (MEMORY, not
-- logged), created before the transaction begins. (No CALL on the way when
-- nothing waits: each costs MariaDB tens of microseconds, on every poll.)
CREATE PROCEDURE {{prefix}}sequence(IN batch_size INT)
    SQL SECURITY INVOKER
BEGIN
    DECLARE v_pending, v_more BOOLEAN DEFAULT FALSE;
    DECLARE v_n BIGINT DEFAULT 0;
    DECLARE v_ver, v_min, v_top, v_lo, v_hi BIGINT;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    CREATE TEMPORARY TABLE IF NOT EXISTS {{prefix}}sequencer_pick (id BIGINT NOT NULL, run_lo BIGINT NULL, PRIMARY KEY USING BTREE (id)) ENGINE = MEMORY;
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    START TRANSACTION;
    SELECT MAX(version), MIN(lo), MAX(lo) INTO v_ver, v_min, v_top FROM {{prefix}}sequencer_runs
     WHERE version = (SELECT MAX(version) FROM {{prefix}}sequencer_runs);
    SELECT EXISTS (SELECT 1 FROM {{prefix}}events FORCE INDEX ({{prefix}}events_seq) WHERE seq IS NULL AND id >= v_top)
      INTO v_pending;
    SET v_hi = v_min - 1;
    WHILE NOT v_pending AND v_hi < v_top - 1 DO
        SET v_lo = NULL;
        SELECT lo, hi INTO v_lo, v_hi FROM {{prefix}}sequencer_runs
         WHERE version = v_ver AND lo > v_hi AND lo < v_top ORDER BY lo LIMIT 1;
        IF v_lo IS NULL THEN
            SET v_hi = v_top;
        ELSE
            SELECT EXISTS (SELECT 1 FROM {{prefix}}events FORCE INDEX ({{prefix}}events_seq)
                            WHERE seq IS NULL AND id >= v_lo AND id <= v_hi)
              INTO v_pending;
        END IF;
    END WHILE;
    IF v_pending THEN
        CALL {{prefix}}sequence_step(batch_size, v_n, v_more);
    END IF;
    COMMIT;
    SELECT v_n AS numbered, v_more AS more;
END //

-- Registers service p_name unless it exists, in one call, returning one
-- row (registered). p_start >= 0 is its offset; below 0 means the latest
-- position: everything committed so far is numbered first (batch by batch,
-- then the rest under the lock) and the offset is the last number, set in
-- the transaction that holds the lock, so that exactly the events
-- committed after this call reach the service.
CREATE PROCEDURE {{prefix}}register_service(IN p_name VARBINARY(64), IN p_start BIGINT, IN p_now BIGINT, IN batch_size INT)
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
        CREATE TEMPORARY TABLE IF NOT EXISTS {{prefix}}sequencer_pick (id BIGINT NOT NULL, run_lo BIGINT NULL, PRIMARY KEY USING BTREE (id)) ENGINE = MEMORY;
        IF p_start < 0 THEN
            REPEAT
                SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
                START TRANSACTION;
                CALL {{prefix}}sequence_step(batch_size, v_n, v_more);
                COMMIT;
            UNTIL NOT v_more END REPEAT;
        END IF;
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
        START TRANSACTION;
        SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
        IF p_start < 0 THEN
            REPEAT
                CALL {{prefix}}sequence_step(batch_size, v_n, v_more);
            UNTIL NOT v_more END REPEAT;
        END IF;
        INSERT IGNORE INTO {{prefix}}services (name, consumed_seq, owner, epoch, version, lease_until, created_at, updated_at)
        SELECT p_name, IF(p_start < 0, last_seq, p_start), '', 0, 0, 0, p_now, p_now
          FROM {{prefix}}sequencer WHERE id = 1;
        SET v_registered = ROW_COUNT() > 0;
        COMMIT;
    END IF;
    SELECT v_registered AS registered;
END //

-- Upkeep of the runs, every few seconds from each instance, returning one
-- row (changed). A hole is given up when no row can come to it any more
-- (settled: a dirty read finds no unnumbered row at all, not even one of an
-- open transaction, and it is older than settle_after seconds, the margin
-- for an id taken by an INSERT whose row is not written yet), or when it is
-- older than expire_after seconds and holds no committed unnumbered row. A
-- row that comes later to a hole given up is found by the sweep: once
-- sweep_every seconds have passed since the last one, the next call walks
-- the NULL entries of events_seq below the open run (at the cost of those
-- delete-marked) and, only if it finds a committed row that no run holds,
-- walks them again under the lock to put each such row back into a run of
-- its own. The holes to give up are gathered, without the lock, in the
-- session's temporary table sequencer_pick (run_lo 1: expired, 0: to
-- settle); the runs change only under the sequencer's lock, and only if no
-- batch changed them meanwhile.
CREATE PROCEDURE {{prefix}}sequence_tidy(IN settle_after BIGINT, IN expire_after BIGINT, IN sweep_every BIGINT, IN batch_size INT)
    SQL SECURITY INVOKER
BEGIN
    DECLARE v_ver, v_top, v_swept, v_last, v_now_ver, v_prev, v_lo, v_hi BIGINT;
    DECLARE v_lost BIGINT DEFAULT 0;
    DECLARE v_now BIGINT DEFAULT UNIX_TIMESTAMP();
    DECLARE v_sweep, v_found, v_gone, v_expired, v_busy BOOLEAN DEFAULT FALSE;
    DECLARE v_changed BOOLEAN DEFAULT FALSE;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION
    BEGIN
        ROLLBACK;
        RESIGNAL;
    END;
    CREATE TEMPORARY TABLE IF NOT EXISTS {{prefix}}sequencer_pick (id BIGINT NOT NULL, run_lo BIGINT NULL, PRIMARY KEY USING BTREE (id)) ENGINE = MEMORY;
    DELETE FROM {{prefix}}sequencer_pick;
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
    -- The candidates: holes old enough to be settled or expired (run_lo 1).
    INSERT INTO {{prefix}}sequencer_pick (id, run_lo)
    SELECT lo, created_at <= v_now - expire_after FROM {{prefix}}sequencer_runs
     WHERE version = v_ver AND hi IS NOT NULL AND created_at <= v_now - LEAST(settle_after, expire_after);
    -- Each is checked on its own, with bounds the optimizer sees as
    -- constants, by a SELECT: MariaDB reads the subquery of a DELETE with
    -- locks, which would wait for the rows of open transactions. An expired
    -- hole stays if it holds a committed unnumbered row (READ COMMITTED); a
    -- settled one, if it holds any unnumbered row (READ UNCOMMITTED). Through
    -- events_seq, as a hole may span many numbered rows.
    SET v_prev = 0;
    holes: LOOP
        SET v_lo = NULL;
        SELECT g.id, r.hi, g.run_lo INTO v_lo, v_hi, v_expired
          FROM {{prefix}}sequencer_pick g JOIN {{prefix}}sequencer_runs r ON r.version = v_ver AND r.lo = g.id
         WHERE g.id > v_prev ORDER BY g.id LIMIT 1;
        IF v_lo IS NULL THEN
            LEAVE holes;
        END IF;
        IF v_expired THEN
            SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
        ELSE
            SET TRANSACTION ISOLATION LEVEL READ UNCOMMITTED;
        END IF;
        SELECT EXISTS (SELECT 1 FROM {{prefix}}events FORCE INDEX ({{prefix}}events_seq)
                        WHERE seq IS NULL AND id >= v_lo AND id <= v_hi)
          INTO v_busy;
        IF v_busy THEN
            DELETE FROM {{prefix}}sequencer_pick WHERE id = v_lo;
        END IF;
        SET v_prev = v_lo;
    END LOOP;
    SELECT EXISTS (SELECT 1 FROM {{prefix}}sequencer_pick) INTO v_gone;
    IF v_sweep OR v_gone THEN
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
        START TRANSACTION;
        SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
        SELECT MAX(version) INTO v_now_ver FROM {{prefix}}sequencer_runs;
        IF v_now_ver = v_ver THEN
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
            -- The open run records the sweep, unless it stopped at batch_size rows.
            INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at)
            SELECT v_ver + 1, lo, hi, IF(hi IS NULL AND v_sweep AND v_lost < batch_size, v_now, created_at)
              FROM {{prefix}}sequencer_runs
             WHERE version = v_ver AND lo NOT IN (SELECT id FROM {{prefix}}sequencer_pick);
            DELETE FROM {{prefix}}sequencer_runs WHERE version = v_ver;
            SET v_changed = v_lost > 0 OR v_gone;
        END IF;
        COMMIT;
    END IF;
    SELECT v_changed AS changed;
END //

DELIMITER ;
