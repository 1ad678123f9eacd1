package main

import (
	"context"
	"fmt"
	"time"
)

// Scenario 2, drain: a backlog is stored first, with no consumer running;
// then the consumer starts and the clock runs from Start (Subscribe) to the
// last handler call.
//
// eventbus's backlog is stored with its own Dispatch and left unsequenced,
// as a running deployment leaves what it stored while its consumers were
// down: the first service's drain includes numbering it (the sequencer).
// A second service then drains the same, now numbered, backlog: that figure
// is the consumer alone. The raw baseline reads the same rows in id order,
// drainRawBatch per query, with plain SQL.

const (
	drainSenders  = 1000
	drainRawBatch = 1000
	drainTimeout  = 15 * time.Minute
)

func runDrain(ctx context.Context, t *target, cfg *config) ([]*row, error) {
	n := thousands(int64(cfg.n))
	withSeq := newRow("Drain "+n+", no-op handler, 1 service, incl. sequencing", "events/s", +1)
	preSeq := newRow("Drain "+n+", no-op handler, 1 service, backlog already sequenced", "events/s", +1)
	tuned := newRow("Drain "+n+", no-op handler, 1 service, watermill batch 1000", "events/s", +1)
	if t.hasPeer() {
		withSeq.note = "watermill: default batch 100"
		preSeq.note = "watermill: same run as above"
	}
	for round := range cfg.rounds {
		for _, s := range order(round, drainPhases(t)...) {
			var err error
			if s == sysLib {
				err = drainLibOne(ctx, t, cfg, withSeq, preSeq, tuned)
			} else {
				err = drainPeerOne(ctx, t, cfg, withSeq, preSeq, tuned)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	if !t.hasPeer() {
		return []*row{withSeq, preSeq}, nil
	}
	return []*row{withSeq, preSeq, tuned}, nil
}

// drainPhases are the contestants that store and drain their own backlog
// (the raw baseline reads eventbus's).
func drainPhases(t *target) []system {
	if !t.hasPeer() {
		return []system{sysLib}
	}
	return []system{sysLib, sysPeer}
}

func runDrainSlow(ctx context.Context, t *target, cfg *config) ([]*row, error) {
	slow := newRow(fmt.Sprintf("Drain %s, handler waits 1 ms, %d senders", thousands(int64(cfg.slowN)), drainSenders), "events/s", +1)
	for round := range cfg.rounds {
		for _, s := range order(round, drainPhases(t)...) {
			rate, err := drainSlow(ctx, t, cfg, s)
			if err != nil {
				return nil, fmt.Errorf("1 ms handler, %s: %w", systemNames[s], err)
			}
			progress.Printf("drain 1ms round %d %s: %.0f events/s", round+1, systemNames[s], rate)
			slow.add(s, rate)
		}
	}
	return []*row{slow}, nil
}

func runDrainFour(ctx context.Context, t *target, cfg *config) ([]*row, error) {
	four := newRow("Drain "+thousands(int64(cfg.n))+", 4 services (sum of their rates)", "events/s", +1)
	for round := range cfg.rounds {
		for _, s := range order(round, drainPhases(t)...) {
			rate, err := drainFour(ctx, t, cfg, s)
			if err != nil {
				return nil, fmt.Errorf("4 services, %s: %w", systemNames[s], err)
			}
			progress.Printf("drain 4 services round %d %s: %.0f events/s", round+1, systemNames[s], rate)
			four.add(s, rate)
		}
	}
	return []*row{four}, nil
}

// drainLibOne stores the backlog, times the raw read, then eventbus's
// first service (incl. sequencing) and second service (already sequenced).
func drainLibOne(ctx context.Context, t *target, cfg *config, withSeq, preSeq, tuned *row) error {
	if err := t.reset(ctx); err != nil {
		return err
	}
	s1, err := newLibBus(t, "drain-1")
	if err != nil {
		return err
	}
	defer s1.close()
	s2, err := newLibBus(t, "drain-2")
	if err != nil {
		return err
	}
	defer s2.close()
	if err := libBacklog(ctx, s1, cfg.n, drainSenders, cfg.producers); err != nil {
		return err
	}
	raw, err := rawReadRate(ctx, t, "ddd_events", 0, cfg.n)
	if err != nil {
		return err
	}
	seqDone := watchSequenced(ctx, s1, cfg.n)
	d1, err := libDrain(ctx, []*libBus{s1}, cfg.n, 0, drainTimeout)
	if err != nil {
		return fmt.Errorf("eventbus drain incl. sequencing: %w", err)
	}
	progress.Printf("drain eventbus: numbering the backlog took %s of the %s drain", seqDone(), d1.Round(time.Millisecond))
	d2, err := libDrain(ctx, []*libBus{s2}, cfg.n, 0, drainTimeout)
	if err != nil {
		return fmt.Errorf("eventbus drain, sequenced: %w", err)
	}
	r1, r2 := float64(cfg.n)/d1.Seconds(), float64(cfg.n)/d2.Seconds()
	progress.Printf("drain eventbus: %.0f events/s incl. sequencing, %.0f sequenced; raw read %.0f rows/s", r1, r2, raw)
	withSeq.add(sysLib, r1)
	preSeq.add(sysLib, r2)
	tuned.add(sysLib, r1)
	for _, r := range []*row{withSeq, preSeq, tuned} {
		r.add(sysRaw, raw)
	}
	return nil
}

// drainPeerOne stores the backlog with watermill-sql and drains it with a
// default subscriber, then with batch 1000 (another consumer group).
func drainPeerOne(ctx context.Context, t *target, cfg *config, withSeq, preSeq, tuned *row) error {
	if err := t.reset(ctx); err != nil {
		return err
	}
	if err := wmInit(t); err != nil {
		return err
	}
	if err := wmBacklog(ctx, t, cfg.n, drainSenders, cfg.producers); err != nil {
		return err
	}
	d1, err := wmDrain(ctx, t, []string{"default"}, 0, cfg.n, 0, drainTimeout)
	if err != nil {
		return err
	}
	d2, err := wmDrain(ctx, t, []string{"batch1000"}, 1000, cfg.n, 0, drainTimeout)
	if err != nil {
		return err
	}
	r1, r2 := float64(cfg.n)/d1.Seconds(), float64(cfg.n)/d2.Seconds()
	progress.Printf("drain watermill: %.0f events/s default, %.0f batch 1000", r1, r2)
	withSeq.add(sysPeer, r1)
	preSeq.add(sysPeer, r1)
	tuned.add(sysPeer, r2)
	return nil
}

// drainSlow drains cfg.slowN events spread over drainSenders senders with a
// handler that sleeps 1 ms.
func drainSlow(ctx context.Context, t *target, cfg *config, s system) (float64, error) {
	if err := t.reset(ctx); err != nil {
		return 0, err
	}
	var d time.Duration
	switch s {
	case sysLib:
		bus, err := newLibBus(t, "slow")
		if err != nil {
			return 0, err
		}
		defer bus.close()
		if err := libBacklog(ctx, bus, cfg.slowN, drainSenders, cfg.producers); err != nil {
			return 0, err
		}
		if d, err = libDrain(ctx, []*libBus{bus}, cfg.slowN, time.Millisecond, drainTimeout); err != nil {
			return 0, err
		}
	case sysPeer:
		if err := wmInit(t); err != nil {
			return 0, err
		}
		if err := wmBacklog(ctx, t, cfg.slowN, drainSenders, cfg.producers); err != nil {
			return 0, err
		}
		var err error
		if d, err = wmDrain(ctx, t, []string{"slow"}, 0, cfg.slowN, time.Millisecond, drainTimeout); err != nil {
			return 0, err
		}
	}
	return float64(cfg.slowN) / d.Seconds(), nil
}

// drainFour drains one backlog with four services (consumer groups) at
// once and returns the sum of their rates.
func drainFour(ctx context.Context, t *target, cfg *config, s system) (float64, error) {
	if err := t.reset(ctx); err != nil {
		return 0, err
	}
	var d time.Duration
	switch s {
	case sysLib:
		var buses []*libBus
		defer func() {
			for _, b := range buses {
				b.close()
			}
		}()
		for i := range 4 {
			b, err := newLibBus(t, fmt.Sprintf("four-%d", i))
			if err != nil {
				return 0, err
			}
			buses = append(buses, b)
		}
		if err := libBacklog(ctx, buses[0], cfg.n, drainSenders, cfg.producers); err != nil {
			return 0, err
		}
		var err error
		if d, err = libDrain(ctx, buses, cfg.n, 0, drainTimeout); err != nil {
			return 0, err
		}
	case sysPeer:
		if err := wmInit(t); err != nil {
			return 0, err
		}
		if err := wmBacklog(ctx, t, cfg.n, drainSenders, cfg.producers); err != nil {
			return 0, err
		}
		var err error
		if d, err = wmDrain(ctx, t, []string{"four-0", "four-1", "four-2", "four-3"}, 0, cfg.n, 0, drainTimeout); err != nil {
			return 0, err
		}
	}
	return 4 * float64(cfg.n) / d.Seconds(), nil
}

// watchSequenced reports how long bus took to number want events, counted
// from the call.
func watchSequenced(ctx context.Context, bus *libBus, want int) func() time.Duration {
	begin := time.Now()
	var took time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil && time.Since(begin) < drainTimeout {
			if bus.Stats().Sequenced >= int64(want) {
				took = time.Since(begin)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() time.Duration { <-done; return took.Round(time.Millisecond) }
}

// rawReadRate times reading want rows with id > after from table.
func rawReadRate(ctx context.Context, t *target, table string, after int64, want int) (float64, error) {
	db, err := t.openSQL()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return 0, err
	}
	begin := time.Now()
	got, err := rawRead(ctx, db, t.kind, table, after, drainRawBatch)
	if err != nil {
		return 0, err
	}
	if got != want {
		return 0, fmt.Errorf("raw read %d rows of %s, want %d", got, table, want)
	}
	return float64(got) / since(begin), nil
}
