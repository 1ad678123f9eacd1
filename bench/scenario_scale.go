package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dddbus/eventbus"
)

// Scenario 4, scale: the drain of cfg.n new events when the table already
// holds older, consumed rows (cfg.scaleOld of them). The cost of a drain
// should follow the work, not the size of the table.
//
// The older rows are written with one INSERT ... SELECT per chunk straight
// into each contestant's table, already sequenced and behind every
// consumer's offset, as history a long-running deployment keeps (the
// retention window); the tables are then analyzed. The new backlog is
// stored and drained as in the drain scenario.

const oldChunk = 100_000

func runScale(ctx context.Context, t *target, cfg *config, dl *deliveries, ce *contestantErrors) ([]*row, error) {
	n := thousands(int64(cfg.n))
	var rows, seqRows []*row
	for _, old := range cfg.scaleOld {
		r := newRow(fmt.Sprintf("Scale: drain %s with %s older rows in the table, incl. sequencing", n, thousands(int64(old))), "events/s", +1)
		s := newRow(fmt.Sprintf("Scale: drain %s with %s older rows, already sequenced", n, thousands(int64(old))), "events/s", +1)
		if t.hasPeer() {
			s.note = "watermill: same run as above"
		}
		rows, seqRows = append(rows, r), append(seqRows, s)
	}
	phases := []system{sysLib, sysPeer}
	if !t.hasPeer() {
		phases = []system{sysLib}
	}
	for round := range cfg.rounds {
		for i, old := range cfg.scaleOld {
			detail := thousands(int64(old)) + " older rows"
			for _, s := range order(round+i, phases...) {
				id := runID{scenario: "scale", sys: s, round: round + 1, detail: detail}
				switch s {
				case sysLib:
					var withSeq, preSeq, raw float64
					_, err := ce.attempt(ctx, id, func(ctx context.Context) (err error) {
						withSeq, preSeq, raw, err = scaleLib(ctx, t, cfg, dl, ce, id, old)
						return err
					})
					if err != nil {
						return nil, err
					}
					progress.Printf("scale %d older, eventbus: %.0f incl. sequencing, %.0f sequenced; raw %.0f rows/s", old, withSeq, preSeq, raw)
					rows[i].add(sysLib, withSeq)
					seqRows[i].add(sysLib, preSeq)
					rows[i].add(sysRaw, raw)
					seqRows[i].add(sysRaw, raw)
				case sysPeer:
					rate, err := measureRate(ctx, ce, id, dl, func(ctx context.Context, dl *deliveries) (float64, error) {
						return scalePeer(ctx, t, cfg, dl, old)
					})
					if err != nil {
						return nil, err
					}
					progress.Printf("scale %d older, watermill: %.0f events/s", old, rate)
					rows[i].add(sysPeer, rate)
					seqRows[i].add(sysPeer, rate)
				}
			}
		}
	}
	out := append(rows, seqRows...)
	if len(cfg.scaleOld) >= 2 {
		// The rate with the most older rows over the rate with the fewest,
		// per round and per contestant.
		first, last := 0, len(cfg.scaleOld)-1
		for _, pair := range [][]*row{rows, seqRows} {
			name := "incl. sequencing"
			if pair[0] == seqRows[0] {
				name = "already sequenced"
			}
			ratio := newRow(fmt.Sprintf("Scale: rate with %s ÷ rate with %s older rows, %s", thousands(int64(cfg.scaleOld[last])),
				thousands(int64(cfg.scaleOld[first])), name), "×", +1)
			for s := range nSystems {
				a, b := pair[last].vals[s], pair[first].vals[s]
				for k := 0; k < len(a) && k < len(b); k++ {
					ratio.add(s, a[k]/b[k])
				}
			}
			out = append(out, ratio)
		}
	}
	return out, nil
}

// scaleLib returns eventbus's drain rates (incl. sequencing, and already
// sequenced) and the raw read rate of the new rows, with old older rows.
//
// The raw read is the raw baseline's run (libID with sysRaw): its failure
// is recorded in ce and leaves raw NaN.
func scaleLib(ctx context.Context, t *target, cfg *config, dl *deliveries, ce *contestantErrors, libID runID, old int) (withSeq, preSeq, raw float64, err error) {
	if err := t.reset(ctx); err != nil {
		return 0, 0, 0, err
	}
	db, err := t.openSQL()
	if err != nil {
		return 0, 0, 0, err
	}
	defer db.Close()
	g, err := t.openGorm()
	if err != nil {
		return 0, 0, 0, err
	}
	err = eventbus.Migrate(ctx, g, "ddd_")
	closeGorm(g)
	if err != nil {
		return 0, 0, 0, err
	}
	if err := insertOldLib(ctx, t, db, old); err != nil {
		return 0, 0, 0, fmt.Errorf("older rows: %w", err)
	}
	// Both services start after the older rows (sequenced 1..old).
	latest := eventbus.WithStartPosition(eventbus.StartAt(int64(old)))
	s1, err := newLibBus(t, "scale-1", latest)
	if err != nil {
		return 0, 0, 0, err
	}
	defer s1.close()
	s2, err := newLibBus(t, "scale-2", latest)
	if err != nil {
		return 0, 0, 0, err
	}
	defer s2.close()
	led := newLedger(cfg.n, drainSenders)
	if err := libBacklog(ctx, s1, led, cfg.producers); err != nil {
		return 0, 0, 0, err
	}
	rawID := libID
	rawID.sys = sysRaw
	if raw, err = measureRate(ctx, ce, rawID, dl, func(ctx context.Context, dl *deliveries) (float64, error) {
		return rawReadRate(ctx, t, dl, "scale", "ddd_events", int64(old), led)
	}); err != nil {
		return 0, 0, 0, err
	}
	begin1, t1, err := libDrain(ctx, []*libBus{s1}, led, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	begin2, t2, err := libDrain(ctx, []*libBus{s2}, led, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	dl.add("scale", sysLib, append(t1, t2...)...)
	return drainRate(begin1, t1...), drainRate(begin2, t2...), raw, nil
}

// insertOldLib writes old consumed events with id = seq = 1..old and moves
// the sequencer past them.
func insertOldLib(ctx context.Context, t *target, db *sql.DB, old int) error {
	payload := payloadOf(0, senderOf(0, drainSenders))
	now := time.Now()
	cols := "id, seq, event_id, event_type, sender, send_type, payload, metadata, occurred_at, created_at"
	for a := 1; a <= old; a += oldChunk {
		b := min(a+oldChunk-1, old)
		var q string
		switch t.kind {
		case "postgres":
			q = fmt.Sprintf("INSERT INTO ddd_events (%s) SELECT g, g, 'old-' || g, '%s', 'customer-' || lpad((g %% 1000)::text, 4, '0'), 1, $1, NULL, $2, $3"+
				" FROM generate_series(%d, %d) g", cols, eventType, a, b)
		case "mysql":
			q = fmt.Sprintf("INSERT INTO ddd_events (%s) SELECT s.seq, s.seq, CONCAT('old-', s.seq), '%s', CONCAT('customer-', LPAD(s.seq %% 1000, 4, '0')), 1, ?, NULL, ?, ?"+
				" FROM seq_%d_to_%d s", cols, eventType, a, b)
		default:
			q = fmt.Sprintf("WITH RECURSIVE g(x) AS (SELECT %d UNION ALL SELECT x + 1 FROM g WHERE x < %d)"+
				" INSERT INTO ddd_events (%s) SELECT x, x, 'old-' || x, '%s', 'customer-' || substr('000' || (x %% 1000), -4), 1, ?, NULL, ?, ? FROM g",
				a, b, cols, eventType)
		}
		if _, err := db.ExecContext(ctx, q, payload, now.UnixMicro(), now.UnixMilli()); err != nil {
			return err
		}
	}
	stmts := []string{fmt.Sprintf("UPDATE ddd_sequencer SET last_seq = %d WHERE id = 1", old)}
	switch t.kind {
	case "postgres":
		stmts = append(stmts, fmt.Sprintf("SELECT setval(pg_get_serial_sequence('ddd_events', 'id'), %d)", max(old, 1)), "VACUUM ANALYZE ddd_events")
	case "mysql":
		stmts = append(stmts, "ANALYZE TABLE ddd_events")
	default:
		stmts = append(stmts, "ANALYZE")
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// scalePeer returns watermill-sql's default drain rate with old older rows.
func scalePeer(ctx context.Context, t *target, cfg *config, dl *deliveries, old int) (float64, error) {
	if err := t.reset(ctx); err != nil {
		return 0, err
	}
	if err := wmInit(t); err != nil {
		return 0, err
	}
	db, err := t.openSQL()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if err := insertOldPeer(ctx, t, db, old, "scale"); err != nil {
		return 0, fmt.Errorf("older rows: %w", err)
	}
	led := newLedger(cfg.n, drainSenders)
	if err := wmBacklog(ctx, t, led, cfg.producers); err != nil {
		return 0, err
	}
	begin, tallies, err := wmDrain(ctx, t, []string{"scale"}, 0, led, 0)
	if err != nil {
		return 0, err
	}
	dl.add("scale", sysPeer, tallies...)
	return drainRate(begin, tallies...), nil
}

// insertOldPeer writes old messages into watermill-sql's table and acks
// them for group.
func insertOldPeer(ctx context.Context, t *target, db *sql.DB, old int, group string) error {
	payload := string(payloadOf(0, senderOf(0, drainSenders)))
	for a := 1; a <= old; a += oldChunk {
		b := min(a+oldChunk-1, old)
		var q string
		if t.kind == "postgres" {
			q = fmt.Sprintf(`INSERT INTO "watermill_%s" (uuid, payload, metadata, transaction_id)`+
				` SELECT 'old-' || g, $1::json, '{}', pg_current_xact_id() FROM generate_series(%d, %d) g`, wmTopic, a, b)
		} else {
			q = fmt.Sprintf("INSERT INTO `watermill_%s` (uuid, payload, metadata) SELECT CONCAT('old-', s.seq), ?, '{}' FROM seq_%d_to_%d s",
				wmTopic, a, b)
		}
		if _, err := db.ExecContext(ctx, q, payload); err != nil {
			return err
		}
	}
	var stmts []string
	if t.kind == "postgres" {
		stmts = []string{
			fmt.Sprintf(`INSERT INTO "watermill_offsets_%s" (consumer_group, offset_acked, last_processed_transaction_id)`+
				` SELECT '%s', "offset", transaction_id FROM "watermill_%s" ORDER BY transaction_id DESC, "offset" DESC LIMIT 1`, wmTopic, group, wmTopic),
			fmt.Sprintf(`VACUUM ANALYZE "watermill_%s"`, wmTopic),
		}
	} else {
		stmts = []string{
			fmt.Sprintf("INSERT INTO `watermill_offsets_%s` (consumer_group, offset_acked, offset_consumed)"+
				" SELECT '%s', MAX(`offset`), MAX(`offset`) FROM `watermill_%s` HAVING COUNT(*) > 0", wmTopic, group, wmTopic),
			fmt.Sprintf("ANALYZE TABLE `watermill_%s`", wmTopic),
		}
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}
