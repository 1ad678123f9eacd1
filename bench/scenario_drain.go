package main

import (
	"context"
	"fmt"
	"math"
	"time"
)

// Scenario 2, drain: a backlog is stored first, with no consumer running;
// then the consumer starts and the clock runs from Start (Subscribe) to the
// last handler call.
//
// eventbus's backlog is stored with its own Dispatch and left unsequenced,
// as a running deployment leaves what it stored while its consumers were
// down: the first service's drain includes sequencing it (the sequencer).
// A second service then drains the same, now sequenced, backlog: that figure
// is the consumer alone. The raw baseline reads the same rows in id order,
// drainRawBatch per query, with plain SQL.

const (
	drainSenders  = 1000
	drainRawBatch = 1000
)

func runDrain(ctx context.Context, t *target, cfg *config, dl *deliveries, ce *contestantErrors) ([]*row, error) {
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
			id := runID{scenario: "drain", sys: s, round: round + 1}
			if s == sysLib {
				if _, err := ce.attempt(ctx, id, func(ctx context.Context) error {
					return drainLibOne(ctx, t, cfg, dl, ce, id, withSeq, preSeq, tuned)
				}); err != nil {
					return nil, err
				}
				continue
			}
			r, ok, err := measure(ctx, ce, id, dl, func(ctx context.Context, dl *deliveries) ([2]float64, error) {
				return drainPeerOne(ctx, t, cfg, dl)
			})
			if err != nil {
				return nil, err
			}
			if !ok {
				r = [2]float64{math.NaN(), math.NaN()} // "—" for this round
			}
			withSeq.add(sysPeer, r[0])
			preSeq.add(sysPeer, r[0])
			tuned.add(sysPeer, r[1])
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

func runDrainSlow(ctx context.Context, t *target, cfg *config, dl *deliveries, ce *contestantErrors) ([]*row, error) {
	slow := newRow(fmt.Sprintf("Drain %s, handler waits 1 ms, %d senders", thousands(int64(cfg.slowN)), drainSenders), "events/s", +1)
	for round := range cfg.rounds {
		for _, s := range order(round, drainPhases(t)...) {
			rate, err := measureRate(ctx, ce, runID{scenario: "drain-slow", sys: s, round: round + 1}, dl, func(ctx context.Context, dl *deliveries) (float64, error) {
				return drainSlow(ctx, t, cfg, dl, s)
			})
			if err != nil {
				return nil, err
			}
			progress.Printf("drain 1ms round %d %s: %.0f events/s", round+1, systemNames[s], rate)
			slow.add(s, rate)
		}
	}
	return []*row{slow}, nil
}

func runDrainFour(ctx context.Context, t *target, cfg *config, dl *deliveries, ce *contestantErrors) ([]*row, error) {
	four := newRow("Drain "+thousands(int64(cfg.n))+", 4 services (sum of their rates)", "events/s", +1)
	for round := range cfg.rounds {
		for _, s := range order(round, drainPhases(t)...) {
			rate, err := measureRate(ctx, ce, runID{scenario: "drain-4", sys: s, round: round + 1}, dl, func(ctx context.Context, dl *deliveries) (float64, error) {
				return drainFour(ctx, t, cfg, dl, s)
			})
			if err != nil {
				return nil, err
			}
			progress.Printf("drain 4 services round %d %s: %.0f events/s", round+1, systemNames[s], rate)
			four.add(s, rate)
		}
	}
	return []*row{four}, nil
}

// drainLibOne stores the backlog, times the raw read, then eventbus's
// first service (incl. sequencing) and second service (already sequenced).
// The raw read is the raw baseline's run (libID with sysRaw): its failure
// is recorded in ce and leaves its figures "—".
func drainLibOne(ctx context.Context, t *target, cfg *config, dl *deliveries, ce *contestantErrors, libID runID, withSeq, preSeq, tuned *row) error {
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
	led := newLedger(cfg.n, drainSenders)
	if err := libBacklog(ctx, s1, led, cfg.producers); err != nil {
		return err
	}
	rawID := libID
	rawID.sys = sysRaw
	raw, err := measureRate(ctx, ce, rawID, dl, func(ctx context.Context, dl *deliveries) (float64, error) {
		return rawReadRate(ctx, t, dl, "drain", "ddd_events", 0, led)
	})
	if err != nil {
		return err
	}
	seqDone := watchSequenced(ctx, s1, cfg.n)
	begin1, t1, err := libDrain(ctx, []*libBus{s1}, led, 0)
	if err != nil {
		return fmt.Errorf("eventbus drain incl. sequencing: %w", err)
	}
	r1 := drainRate(begin1, t1...)
	progress.Printf("drain eventbus: sequencing the backlog took %s", seqDone())
	begin2, t2, err := libDrain(ctx, []*libBus{s2}, led, 0)
	if err != nil {
		return fmt.Errorf("eventbus drain, sequenced: %w", err)
	}
	r2 := drainRate(begin2, t2...)
	dl.add("drain", sysLib, append(t1, t2...)...)
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
// default subscriber, then with batch 1000 (another consumer group), and
// returns both rates.
func drainPeerOne(ctx context.Context, t *target, cfg *config, dl *deliveries) ([2]float64, error) {
	var none [2]float64
	if err := t.reset(ctx); err != nil {
		return none, err
	}
	if err := wmInit(t); err != nil {
		return none, err
	}
	led := newLedger(cfg.n, drainSenders)
	if err := wmBacklog(ctx, t, led, cfg.producers); err != nil {
		return none, err
	}
	begin1, t1, err := wmDrain(ctx, t, []string{"default"}, 0, led, 0)
	if err != nil {
		return none, err
	}
	begin2, t2, err := wmDrain(ctx, t, []string{"batch1000"}, 1000, led, 0)
	if err != nil {
		return none, err
	}
	dl.add("drain", sysPeer, append(t1, t2...)...)
	r1, r2 := drainRate(begin1, t1...), drainRate(begin2, t2...)
	progress.Printf("drain watermill: %.0f events/s default, %.0f batch 1000", r1, r2)
	return [2]float64{r1, r2}, nil
}

// drainSlow drains cfg.slowN events spread over drainSenders senders with a
// handler that sleeps 1 ms.
func drainSlow(ctx context.Context, t *target, cfg *config, dl *deliveries, s system) (float64, error) {
	if err := t.reset(ctx); err != nil {
		return 0, err
	}
	led := newLedger(cfg.slowN, drainSenders)
	var begin time.Time
	var tallies []*tally
	switch s {
	case sysLib:
		bus, err := newLibBus(t, "slow")
		if err != nil {
			return 0, err
		}
		defer bus.close()
		if err := libBacklog(ctx, bus, led, cfg.producers); err != nil {
			return 0, err
		}
		if begin, tallies, err = libDrain(ctx, []*libBus{bus}, led, time.Millisecond); err != nil {
			return 0, err
		}
	case sysPeer:
		if err := wmInit(t); err != nil {
			return 0, err
		}
		if err := wmBacklog(ctx, t, led, cfg.producers); err != nil {
			return 0, err
		}
		var err error
		if begin, tallies, err = wmDrain(ctx, t, []string{"slow"}, 0, led, time.Millisecond); err != nil {
			return 0, err
		}
	}
	dl.add("drain-slow", s, tallies...)
	return drainRate(begin, tallies...), nil
}

// drainFour drains one backlog with four services (consumer groups) at
// once and returns the sum of their rates.
func drainFour(ctx context.Context, t *target, cfg *config, dl *deliveries, s system) (float64, error) {
	if err := t.reset(ctx); err != nil {
		return 0, err
	}
	led := newLedger(cfg.n, drainSenders)
	var begin time.Time
	var tallies []*tally
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
		if err := libBacklog(ctx, buses[0], led, cfg.producers); err != nil {
			return 0, err
		}
		var err error
		if begin, tallies, err = libDrain(ctx, buses, led, 0); err != nil {
			return 0, err
		}
	case sysPeer:
		if err := wmInit(t); err != nil {
			return 0, err
		}
		if err := wmBacklog(ctx, t, led, cfg.producers); err != nil {
			return 0, err
		}
		var err error
		if begin, tallies, err = wmDrain(ctx, t, []string{"four-0", "four-1", "four-2", "four-3"}, 0, led, 0); err != nil {
			return 0, err
		}
	}
	dl.add("drain-4", s, tallies...)
	return drainRate(begin, tallies...), nil
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

// rawReadRate times reading the rows of led (the rows of table with
// id > after) with plain SQL; what it read goes to dl under scenario.
func rawReadRate(ctx context.Context, t *target, dl *deliveries, scenario, table string, after int64, led *ledger) (float64, error) {
	db, err := t.openSQL()
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return 0, err
	}
	tl := newTally(led, false)
	begin := time.Now()
	if _, err := rawRead(ctx, db, t.kind, table, after, drainRawBatch, tl.deliver); err != nil {
		return 0, err
	}
	delivered, _ := tl.progress()
	rate := float64(delivered) / since(begin)
	dl.add(scenario, sysRaw, tl)
	return rate, nil
}
