-- The sequencer's batch in one round trip (see sequencer.go): it runs in
-- the caller's statement, i.e. its own transaction, and each statement of
-- a VOLATILE PL/pgSQL function takes a new snapshot under READ COMMITTED,
-- so the rows are picked after the sequencer row is locked, as in the
-- statement-by-statement form. The commit is asynchronous (the argument is
-- in sequencer.go). It numbers up to batch_size unnumbered rows among the
-- span ids from the lowest one, in id order, from last_seq+1; it returns
-- how many, and whether unnumbered rows lie beyond the window.
CREATE OR REPLACE FUNCTION {{prefix}}sequence_batch(batch_size integer, span bigint, OUT numbered bigint, OUT beyond boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_last bigint;
    v_lo   bigint;
    v_max  bigint;
BEGIN
    numbered := 0;
    beyond := false;
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT last_seq INTO v_last FROM {{prefix}}sequencer WHERE id = 1 FOR UPDATE;
    -- The lowest unnumbered id and the pick share one statement, hence one
    -- snapshot: a row that committed after lo was read must not be skipped
    -- by a pick that sees later transactions (see sequencer.go).
    WITH lo AS (
        SELECT id FROM {{prefix}}events WHERE seq IS NULL ORDER BY id LIMIT 1
    ), picked AS (
        SELECT id FROM {{prefix}}events
        WHERE seq IS NULL AND id >= (SELECT id FROM lo) AND id < (SELECT id FROM lo) + span
        ORDER BY id LIMIT batch_size
    ), assigned AS (
        UPDATE {{prefix}}events e SET seq = e.id + v_last + 1 - (SELECT id FROM lo)
        FROM picked WHERE e.id = picked.id AND e.seq IS NULL
        RETURNING e.seq
    )
    SELECT COUNT(*), MAX(seq), (SELECT id FROM lo) INTO numbered, v_max, v_lo FROM assigned;
    IF numbered > 0 THEN
        UPDATE {{prefix}}sequencer SET last_seq = v_max WHERE id = 1;
    END IF;
    IF v_lo IS NOT NULL THEN
        beyond := EXISTS (SELECT 1 FROM {{prefix}}events WHERE seq IS NULL AND id >= v_lo + span);
    END IF;
END
$$;
