-- The sequencer's batch, version 4: what 0007 does, in fewer statements.
-- sequence_step and sequence_tidy are replaced, with the same parameters;
-- the other routines stay as 0007 made them.
--
-- The old version of the runs is deleted by its number (version = v_ver),
-- not as every version up to it: that range began at the start of the
-- primary key and walked the entries of every version deleted before,
-- which stay until vacuum, and behind a long snapshot for good, so a batch
-- cost more with every batch before it. Only the current version is ever
-- left: each writer deletes it with the one it replaces.
--
-- more no longer runs sequence_pending again after numbering: the pick
-- says it (it took batch_size ids, or a committed row lies beyond the open
-- run's window), in the statement that makes it. The runs left are
-- written, and the old version deleted, in one statement; in the common
-- case (no hole, no id skipped between the picked ones) from values, the
-- open run above the last id picked and the hole below the first, if any.
CREATE OR REPLACE FUNCTION {{prefix}}sequence_step(batch_size integer, span bigint, OUT numbered bigint, OUT more boolean)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    v_last   bigint;
    v_ver    bigint;
    v_top    bigint;
    v_made   bigint;
    v_settle bigint;
    v_delta  bigint;
    v_now    bigint := extract(epoch FROM clock_timestamp())::bigint;
    v_xid    bigint;
    v_n      integer;
    v_found  integer;
    v_holes  bigint[];
    v_ids    bigint[];
    v_beyond boolean;
    v_runs   boolean;
BEGIN
    numbered := 0;
    more := false;
    SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
    SELECT version, lo, created_at, settle_xid INTO v_ver, v_top, v_made, v_settle FROM {{prefix}}sequencer_runs
     WHERE version = (SELECT max(version) FROM {{prefix}}sequencer_runs) AND hi IS NULL;
    WITH holes AS (
        SELECT x.id FROM {{prefix}}sequencer_runs r
        CROSS JOIN LATERAL (
            SELECT e.id FROM {{prefix}}events e
             WHERE e.seq IS NULL AND e.id >= r.lo AND e.id <= r.hi
             ORDER BY e.id LIMIT batch_size) x
         WHERE r.version = v_ver AND r.hi IS NOT NULL
    ), first AS (
        SELECT id FROM {{prefix}}events WHERE seq IS NULL AND id >= v_top ORDER BY id LIMIT 1
    ), top AS (
        SELECT id FROM {{prefix}}events
         WHERE seq IS NULL AND id >= (SELECT id FROM first) AND id < (SELECT id FROM first) + span
         ORDER BY id LIMIT batch_size
    )
    SELECT (SELECT array_agg(id ORDER BY id) FROM holes), (SELECT array_agg(id ORDER BY id) FROM top),
           EXISTS (SELECT 1 FROM {{prefix}}events WHERE seq IS NULL AND id >= (SELECT id FROM first) + span),
           EXISTS (SELECT 1 FROM {{prefix}}sequencer_runs WHERE version = v_ver AND hi IS NOT NULL)
      INTO v_holes, v_ids, v_beyond, v_runs;
    -- Every hole lies below the open run.
    v_ids := COALESCE(v_holes, '{}') || COALESCE(v_ids, '{}');
    v_found := cardinality(v_ids);
    v_ids := v_ids[1:batch_size];
    v_n := cardinality(v_ids);
    IF v_n = 0 THEN
        RETURN;
    END IF;
    -- Every id of a run was taken before this snapshot: a transaction that
    -- may still bring one of them has an id below v_xid (or none yet).
    v_xid := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
    v_delta := v_last + 1 - v_ids[1];
    -- Through the primary key, never a join the planner could turn into a
    -- rescan per row (see migration 0004).
    UPDATE {{prefix}}events SET seq = id + v_delta WHERE id = ANY (v_ids) AND seq IS NULL;
    GET DIAGNOSTICS numbered = ROW_COUNT;
    UPDATE {{prefix}}sequencer SET last_seq = v_ids[v_n] + v_delta WHERE id = 1;
    IF NOT v_runs AND v_ids[v_n] - v_ids[1] + 1 = v_n THEN
        WITH gone AS (DELETE FROM {{prefix}}sequencer_runs WHERE version = v_ver)
        INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at, settle_xid)
        SELECT v_ver + 1, v_ids[v_n] + 1, NULL, v_made, v_settle
        UNION ALL
        SELECT v_ver + 1, v_top, v_ids[1] - 1, v_now, v_xid WHERE v_ids[1] > v_top;
    ELSE
        -- Each run intersected with the gaps between the picked ids (and
        -- before the first, after the last). A run without picks lies in
        -- one gap and comes out whole. Holes cut from the open run are
        -- new; pieces of a hole keep its age.
        WITH gone AS (DELETE FROM {{prefix}}sequencer_runs WHERE version = v_ver)
        INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at, settle_xid)
        SELECT v_ver + 1, GREATEST(r.lo, g.lo), LEAST(r.hi, g.hi),
               CASE WHEN r.hi IS NULL AND g.hi IS NOT NULL THEN v_now ELSE r.created_at END,
               CASE WHEN r.hi IS NULL AND g.hi IS NOT NULL THEN v_xid ELSE r.settle_xid END
          FROM {{prefix}}sequencer_runs r
          JOIN (SELECT NULL::bigint AS lo, v_ids[1] - 1 AS hi
                UNION ALL
                SELECT u.a + 1, u.b - 1 FROM unnest(v_ids[1:v_n - 1], v_ids[2:v_n]) u(a, b) WHERE u.b > u.a + 1
                UNION ALL
                SELECT v_ids[v_n] + 1, NULL) g
            ON r.lo <= COALESCE(g.hi, 9223372036854775807) AND COALESCE(g.lo, 0) <= COALESCE(r.hi, 9223372036854775807)
         WHERE r.version = v_ver;
    END IF;
    -- batch_size ids found, or committed rows beyond the open run's window.
    more := v_found >= batch_size OR v_beyond;
END
$$;

-- Upkeep of the runs, every few seconds from each instance; it changes them
-- only under the sequencer's lock, and only if no batch did meanwhile.
-- A hole is given up when no row can come to it any more (settled: every
-- transaction that could bring one has ended, and it is older than
-- settle_after seconds, the margin for an id taken by an INSERT not yet
-- written), or when it is older than expire_after seconds; never while it
-- holds a committed row. A row that comes later to a hole given up is found
-- by the sweep: once sweep_every seconds have passed since the last one,
-- the next call walks the index of unnumbered rows below the open run (at
-- the cost of its dead entries, without the lock) and puts any committed
-- row no run holds back into a run of its own.
CREATE OR REPLACE PROCEDURE {{prefix}}sequence_tidy(settle_after bigint, expire_after bigint, sweep_every bigint, batch_size integer, INOUT changed boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_ver   bigint;
    v_top   bigint;
    v_swept bigint;
    v_now   bigint := extract(epoch FROM clock_timestamp())::bigint;
    v_sweep boolean;
    v_lost  bigint[];
    v_drop  bigint[];
BEGIN
    changed := false;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        COMMIT;
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    END IF;
    SELECT r.version, r.lo, r.created_at INTO v_ver, v_top, v_swept FROM {{prefix}}sequencer_runs r
     WHERE r.version = (SELECT max(version) FROM {{prefix}}sequencer_runs) AND r.hi IS NULL;
    v_sweep := v_now - v_swept >= sweep_every;
    IF v_sweep THEN
        SELECT array_agg(x.id ORDER BY x.id) INTO v_lost FROM (
            SELECT e.id FROM {{prefix}}events e
             WHERE e.seq IS NULL AND e.id < v_top
               AND NOT EXISTS (SELECT 1 FROM {{prefix}}sequencer_runs r
                                WHERE r.version = v_ver AND e.id >= r.lo AND e.id <= COALESCE(r.hi, 9223372036854775807))
             ORDER BY e.id LIMIT batch_size) x;
    END IF;
    -- The settle test and the look for committed rows share one statement,
    -- hence one snapshot: rows of the transactions it saw ended are visible.
    SELECT array_agg(r.lo) INTO v_drop FROM {{prefix}}sequencer_runs r
      LEFT JOIN LATERAL (
          SELECT 1 AS busy FROM {{prefix}}events e
           WHERE e.seq IS NULL AND e.id >= r.lo AND e.id <= r.hi LIMIT 1) x ON true
     WHERE r.version = v_ver AND r.hi IS NOT NULL AND x.busy IS NULL
       AND (r.created_at <= v_now - expire_after
            OR (r.created_at <= v_now - settle_after
                AND r.settle_xid <= pg_snapshot_xmin(pg_current_snapshot())::text::bigint));
    IF NOT v_sweep AND v_drop IS NULL THEN
        RETURN;
    END IF;
    PERFORM 1 FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
    IF (SELECT max(version) FROM {{prefix}}sequencer_runs) <> v_ver THEN
        COMMIT;
        RETURN;
    END IF;
    INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at, settle_xid)
    SELECT v_ver + 1, r.lo, r.hi,
           CASE WHEN r.hi IS NULL AND v_sweep AND cardinality(COALESCE(v_lost, '{}')) < batch_size THEN v_now ELSE r.created_at END,
           r.settle_xid
      FROM {{prefix}}sequencer_runs r
     WHERE r.version = v_ver AND r.lo <> ALL (COALESCE(v_drop, '{}'))
    UNION ALL
    SELECT v_ver + 1, l.id, l.id, v_now, 0 FROM unnest(v_lost) l(id);
    DELETE FROM {{prefix}}sequencer_runs WHERE version = v_ver;
    changed := v_lost IS NOT NULL OR v_drop IS NOT NULL;
    COMMIT;
END
$$;
