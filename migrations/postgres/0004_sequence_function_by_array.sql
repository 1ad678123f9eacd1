-- The sequencer's batch, version 2. Version 1 joined the picked rows back
-- to the table in one statement; when the statistics were gathered while
-- every row was numbered, the planner expected one unnumbered row, ran
-- that join as a nested loop over all unnumbered rows and rescanned the
-- picked ones for each, so a batch cost grew with the backlog (squared
-- over a whole drain). Now the picked ids go into an array and the UPDATE
-- finds them through the primary key, whatever the statistics say.
-- Everything else is as in 0003: the lock is taken first, the lowest
-- unnumbered id and the pick share one statement (one snapshot), and the
-- commit is asynchronous (see sequencer.go).
CREATE OR REPLACE FUNCTION {{prefix}}sequence_batch(batch_size integer, span bigint, OUT numbered bigint, OUT beyond boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_last bigint;
    v_ids  bigint[];
    v_n    integer;
BEGIN
    numbered := 0;
    beyond := false;
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
    WITH lo AS (
        SELECT id FROM {{prefix}}events WHERE seq IS NULL ORDER BY id LIMIT 1
    )
    SELECT array_agg(p.id ORDER BY p.id) INTO v_ids FROM (
        SELECT id FROM {{prefix}}events
        WHERE seq IS NULL AND id >= (SELECT id FROM lo) AND id < (SELECT id FROM lo) + span
        ORDER BY id LIMIT batch_size
    ) p;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    v_n := cardinality(v_ids);
    -- seq = id + delta keeps id order and starts at last_seq + 1; "seq IS
    -- NULL" is re-checked on the current row version.
    UPDATE {{prefix}}events SET seq = id + v_last + 1 - v_ids[1]
    WHERE id = ANY (v_ids) AND seq IS NULL;
    GET DIAGNOSTICS numbered = ROW_COUNT;
    IF numbered > 0 THEN
        -- The highest number this batch could have given, so the next
        -- batch starts above every one it gave.
        UPDATE {{prefix}}sequencer SET last_seq = v_ids[v_n] + v_last + 1 - v_ids[1] WHERE id = 1;
    END IF;
    beyond := EXISTS (SELECT 1 FROM {{prefix}}events WHERE seq IS NULL AND id >= v_ids[1] + span);
END
$$;
