package main

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestAttemptRecordsCompetitorError(t *testing.T) {
	ce := &contestantErrors{}
	id := runID{scenario: "latency", sys: sysPeer, detail: "poll 10ms"}
	ok, err := ce.attempt(context.Background(), id, func(context.Context) error {
		return errors.New("only 3999 of 4000 events handled")
	})
	if ok || err != nil {
		t.Fatalf("attempt = %v, %v; want false, nil (recorded)", ok, err)
	}
	got := ce.failures()
	if len(got) != 1 || got[0].runID != id || got[0].err != "only 3999 of 4000 events handled" {
		t.Fatalf("recorded %+v", got)
	}
	if err := runOutcome(nil, &deliveries{}); err != nil {
		t.Fatalf("a competitor's error failed the run: %v", err)
	}
}

func TestAttemptReturnsEventbusError(t *testing.T) {
	ce := &contestantErrors{}
	id := runID{scenario: "drain", sys: sysLib, round: 2}
	boom := errors.New("boom")
	ok, err := ce.attempt(context.Background(), id, func(context.Context) error { return boom })
	if ok || !errors.Is(err, boom) || !strings.Contains(err.Error(), "drain, eventbus, round 2") {
		t.Fatalf("attempt = %v, %v; want eventbus's error, named", ok, err)
	}
	if len(ce.failures()) != 0 {
		t.Fatalf("eventbus's error was recorded as a contestant error: %+v", ce.failures())
	}
	if err := runOutcome(err, &deliveries{}); err == nil {
		t.Fatal("eventbus's error did not fail the run")
	}
}

func TestAttemptRecordsCompetitorPanic(t *testing.T) {
	ce := &contestantErrors{}
	// A panic in a producer goroutine, as a peer's publish could raise.
	ok, err := ce.attempt(context.Background(), runID{scenario: "dispatch", sys: sysRaw, round: 1}, func(ctx context.Context) error {
		return produce(ctx, 2, 0, 10, func(context.Context, int) error { panic("nil map") })
	})
	if ok || err != nil {
		t.Fatalf("attempt = %v, %v; want false, nil", ok, err)
	}
	// A panic in the run's own goroutine.
	ok, err = ce.attempt(context.Background(), runID{scenario: "dispatch", sys: sysPeer, round: 1}, func(context.Context) error {
		panic("index out of range")
	})
	if ok || err != nil {
		t.Fatalf("attempt = %v, %v; want false, nil", ok, err)
	}
	got := ce.failures()
	if len(got) != 2 || got[0].err != "panic: nil map" || got[1].err != "panic: index out of range" {
		t.Fatalf("recorded %+v", got)
	}
	// eventbus's panic is its error.
	if _, err := ce.attempt(context.Background(), runID{scenario: "dispatch", sys: sysLib}, func(context.Context) error {
		panic("bug")
	}); err == nil || !strings.Contains(err.Error(), "panic: bug") {
		t.Fatalf("eventbus's panic: %v", err)
	}
}

func TestAttemptTimesOutCompetitor(t *testing.T) {
	ce := &contestantErrors{timeout: 50 * time.Millisecond, abandon: 50 * time.Millisecond}
	id := runID{scenario: "drain", sys: sysPeer, round: 1}
	begin := time.Now()
	ok, err := ce.attempt(context.Background(), id, func(ctx context.Context) error {
		<-ctx.Done() // a run that honours its context
		return ctx.Err()
	})
	if ok || err != nil {
		t.Fatalf("attempt = %v, %v", ok, err)
	}
	// A run that ignores its context is abandoned.
	release := make(chan struct{})
	defer close(release)
	ok, err = ce.attempt(context.Background(), runID{scenario: "latency", sys: sysPeer}, func(context.Context) error {
		<-release
		return nil
	})
	if ok || err != nil {
		t.Fatalf("attempt = %v, %v", ok, err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("two timed-out runs took %s", d)
	}
	// The contestant's later rounds in the scenario are skipped at once;
	// another contestant's are not.
	called := false
	ok, err = ce.attempt(context.Background(), runID{scenario: "drain", sys: sysPeer, round: 2}, func(context.Context) error {
		called = true
		return nil
	})
	if ok || err != nil || called {
		t.Fatalf("attempt after a time-out = %v, %v, called %v; want skipped", ok, err, called)
	}
	ok, err = ce.attempt(context.Background(), runID{scenario: "drain", sys: sysRaw, round: 2}, func(context.Context) error { return nil })
	if !ok || err != nil {
		t.Fatalf("raw SQL after watermill's time-out = %v, %v", ok, err)
	}
	got := ce.failures()
	if len(got) != 3 ||
		!strings.HasPrefix(got[0].err, "timed out after 50ms: context deadline exceeded") ||
		!strings.Contains(got[1].err, "abandoned") ||
		got[2].err != "skipped: timed out in round 1" {
		t.Fatalf("recorded %+v", got)
	}
}

func TestAttemptInterrupted(t *testing.T) {
	ce := &contestantErrors{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ok, err := ce.attempt(ctx, runID{scenario: "scale", sys: sysPeer}, func(ctx context.Context) error { return ctx.Err() })
	if ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("attempt = %v, %v; want the interrupt", ok, err)
	}
	if len(ce.failures()) != 0 {
		t.Fatalf("an interrupt was recorded: %+v", ce.failures())
	}
}

func TestFailedRoundShowsDash(t *testing.T) {
	ce := &contestantErrors{}
	r := newRow("Drain 5,000", "events/s", +1)
	for round, rates := range [][2]float64{{1000, 500}, {1000, 0}, {900, 300}} {
		r.add(sysLib, rates[0])
		rate, err := measureRate(context.Background(), ce, runID{scenario: "drain", sys: sysPeer, round: round + 1}, nil, func(context.Context, *deliveries) (float64, error) {
			if round == 1 {
				return 0, errors.New("subscriber: connection refused")
			}
			return rates[1], nil
		})
		if err != nil {
			t.Fatal(err)
		}
		r.add(sysPeer, rate)
	}
	if !math.IsNaN(r.vals[sysPeer][1]) {
		t.Fatalf("failed round = %v, want NaN", r.vals[sysPeer][1])
	}
	// The ratio is the median of rounds 1 and 3 (2× and 3×).
	if got := r.ratio(sysPeer); got != 2.5 {
		t.Fatalf("ratio = %v, want 2.5", got)
	}
	var b bytes.Buffer
	writeTable(&b, []*row{r})
	writeContestantErrors(&b, ce)
	out := b.String()
	for _, want := range []string{
		"watermill-sql [500, —, 300]",
		"| 1,000 | 400 | — | 2.50× |",
		"Contestant errors",
		"| drain | watermill-sql | 2 |  | subscriber: connection refused |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestMeasureKeepsCountsOfFinishedRunsOnly(t *testing.T) {
	ce, dl := &contestantErrors{}, &deliveries{}
	for round := 1; round <= 2; round++ {
		_, err := measureRate(context.Background(), ce, runID{scenario: "drain", sys: sysPeer, round: round}, dl, func(_ context.Context, dl *deliveries) (float64, error) {
			dl.addCounts("drain", sysPeer, counts{committed: 10, delivered: 10})
			if round == 2 {
				return 0, errors.New("failed after counting")
			}
			return 1, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(dl.lines) != 1 || len(dl.lines[0].runs) != 1 {
		t.Fatalf("delivery lines %+v, want round 1's run only", dl.lines)
	}
}
