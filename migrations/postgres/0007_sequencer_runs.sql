-- The sequencer, version 3 (see sequencer.go): it states its isolation
-- level, holds its lock only inside the server, and its cost no longer grows
-- with what was numbered while a long snapshot holds back vacuum.
--
-- Runs. Instead of walking the index of unnumbered rows from its start
-- (whose entries of rows numbered since the oldest open snapshot stay
-- until vacuum can remove them), the sequencer keeps the ranges of ids
-- that may still hold a row to number: the ids it has not examined yet
-- (the open run, hi NULL, above every id numbered) and the holes it left
-- behind (ids that had no committed row when a batch passed them: rows of
-- transactions still open, which are numbered when they commit, rolled
-- back or never used). A poll looks in these ranges only; a hole costs an
-- index probe whatever was numbered around it.
--
-- The list is written whole under a new version by each batch that changes
-- it, never updated in place: a poll reads the highest version through the
-- primary key in a constant number of steps, while rows of older versions,
-- deleted by the batch that replaced them, lie below it in the index.
-- created_at (database clock, seconds) is when a hole appeared; for the
-- open run it is when the log below it was last swept. settle_xid is the
-- first transaction id not yet assigned when the hole appeared: once every
-- transaction below it has ended, no row can come to the hole any more.
--
-- The function of migration 0004 stays, for instances of the previous
-- version during a rolling upgrade: it takes the same lock and numbers
-- above the same last_seq, and rows it numbers inside runs are skipped.
CREATE TABLE IF NOT EXISTS {{prefix}}sequencer_runs (
    version    BIGINT NOT NULL,
    lo         BIGINT NOT NULL,
    hi         BIGINT,
    created_at BIGINT NOT NULL,
    settle_xid BIGINT NOT NULL,
    PRIMARY KEY (version, lo)
);
-- At first every id is unexamined: the first batch splits this run.
INSERT INTO {{prefix}}sequencer_runs (version, lo, hi, created_at, settle_xid)
SELECT 1, 1, NULL, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM {{prefix}}sequencer_runs);

-- Whether a committed row waits for a number in the current runs. It
-- takes no lock; each run costs an index probe. The probes are LATERAL, so
-- that no plan can read the index of unnumbered rows whole (with its
-- entries of rows numbered behind an old snapshot) and join the runs to
-- it: PL/pgSQL keeps a plan for the whole session, one made while the
-- table was small among them. For the same reason, this function and
-- sequence_step run with sequential scans off.
CREATE OR REPLACE FUNCTION {{prefix}}sequence_pending() RETURNS boolean
LANGUAGE plpgsql STABLE SET enable_seqscan = off AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM {{prefix}}sequencer_runs r
        CROSS JOIN LATERAL (
            SELECT 1 FROM {{prefix}}events e
             WHERE e.seq IS NULL AND e.id >= r.lo AND e.id <= COALESCE(r.hi, 9223372036854775807)
             LIMIT 1) x
         WHERE r.version = (SELECT max(version) FROM {{prefix}}sequencer_runs));
END
$$;

-- One batch, in the caller's transaction, which must run at READ
-- COMMITTED so that each statement sees what committed before it. It locks
-- the sequencer row, then picks, in one statement (one snapshot), the first
-- batch_size committed unnumbered ids of the runs in id order: those of
-- the holes (each probed on its own), then those of the open run, within
-- span ids of its first one, so that no plan can sort a whole backlog. It
-- numbers exactly those, seq = id + delta with delta putting the first at
-- last_seq + 1, and writes the runs left: a picked id leaves its run, and
-- the open run now starts above the last one picked. As the pick is one
-- snapshot and complete below its last id, a row is never numbered before
-- a row that had committed before its transaction began, nor before a
-- lower row of its own transaction. It returns how many rows it numbered
-- and whether committed rows still wait.
CREATE OR REPLACE FUNCTION {{prefix}}sequence_step(batch_size integer, span bigint, OUT numbered bigint, OUT more boolean)
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
DECLARE
    v_last  bigint;
    v_ver   bigint;
    v_top   bigint;
    v_delta bigint;
    v_now   bigint := extract(epoch FROM clock_timestamp())::bigint;
    v_xid   bigint;
    v_n     integer;
    v_holes bigint[];
    v_ids   bigint[];
BEGIN
    numbered := 0;
    more := false;
    SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
    SELECT version, lo INTO v_ver, v_top FROM {{prefix}}sequencer_runs
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
    SELECT (SELECT array_agg(id ORDER BY id) FROM holes), (SELECT array_agg(id ORDER BY id) FROM top)
      INTO v_holes, v_ids;
    -- Every hole lies below the open run.
    v_ids := (COALESCE(v_holes, '{}') || COALESCE(v_ids, '{}'))[1:batch_size];
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
    -- The runs left: each run intersected with the gaps between the picked
    -- ids (and before the first, after the last). A run without picks lies
    -- in one gap and comes out whole. Holes cut from the open run are new;
    -- pieces of a hole keep its age.
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
    DELETE FROM {{prefix}}sequencer_runs WHERE version <= v_ver;
    more := {{prefix}}sequence_pending();
END
$$;

-- The sequencer's call (one round trip). A poll with nothing to number
-- only reads. Otherwise the batch runs at READ COMMITTED whatever the
-- session's default (at REPEATABLE READ or SERIALIZABLE its snapshot would
-- predate the lock, and concurrent batches would fail with serialization
-- errors), and commits here, inside the server, before the call returns: a
-- client frozen after sending the call holds nothing. The commit is
-- asynchronous (see sequencer.go).
CREATE OR REPLACE PROCEDURE {{prefix}}sequence(batch_size integer, span bigint, INOUT numbered bigint, INOUT more boolean)
LANGUAGE plpgsql AS $$
BEGIN
    numbered := 0;
    more := false;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        COMMIT;
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    END IF;
    IF NOT {{prefix}}sequence_pending() THEN
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT s.numbered, s.more INTO numbered, more FROM {{prefix}}sequence_step(batch_size, span) s;
    COMMIT;
END
$$;

-- Registers service p_name unless it exists, in one call. p_start >= 0 is
-- its offset; below 0 means the latest position: everything committed so
-- far is numbered first (batch by batch, then the rest under the lock) and
-- the offset is the last number, in the transaction that holds the lock,
-- so that exactly the events committed after this call reach the service.
-- The commit that creates the service is synchronous.
CREATE OR REPLACE PROCEDURE {{prefix}}register_service(p_name text, p_start bigint, p_now bigint, batch_size integer, span bigint, INOUT registered boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_more boolean;
BEGIN
    registered := false;
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        COMMIT;
        SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    END IF;
    IF EXISTS (SELECT 1 FROM {{prefix}}services WHERE name = p_name) THEN
        RETURN;
    END IF;
    IF p_start < 0 THEN
        LOOP
            EXIT WHEN NOT {{prefix}}sequence_pending();
            PERFORM set_config('synchronous_commit', 'off', true);
            SELECT s.more INTO v_more FROM {{prefix}}sequence_step(batch_size, span) s;
            COMMIT;
            -- A transaction begun by COMMIT has the session's default level.
            SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
            EXIT WHEN NOT v_more;
        END LOOP;
        PERFORM 1 FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
        WHILE {{prefix}}sequence_pending() LOOP
            PERFORM {{prefix}}sequence_step(batch_size, span);
        END LOOP;
    END IF;
    INSERT INTO {{prefix}}services (name, consumed_seq, owner, epoch, version, lease_until, created_at, updated_at)
    SELECT p_name, CASE WHEN p_start < 0 THEN last_seq ELSE p_start END, '', 0, 0, 0, p_now, p_now
      FROM {{prefix}}sequencer WHERE id = 1
    ON CONFLICT (name) DO NOTHING;
    registered := FOUND;
    COMMIT;
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
    DELETE FROM {{prefix}}sequencer_runs WHERE version <= v_ver;
    changed := v_lost IS NOT NULL OR v_drop IS NOT NULL;
    COMMIT;
END
$$;
