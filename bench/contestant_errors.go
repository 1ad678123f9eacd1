package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// A competing contestant's failure (watermill-sql's or the raw baseline's
// error, panic or time-out) is a result, like its losses: attempt records
// it, the contestant's figures for that run stay empty ("—") and the run
// goes on with the next contestant and round. Only eventbus's own errors
// (and the harness's, in an eventbus run) end the run and fail it.

// runID names one run of one contestant: a scenario, a round (1-based;
// 0 when the scenario has none) and what else tells its runs apart.
type runID struct {
	scenario string
	sys      system
	round    int
	detail   string // e.g. "poll 10ms"; may be empty
}

func (r runID) String() string {
	s := r.scenario + ", " + systemNames[r.sys]
	if r.round > 0 {
		s += fmt.Sprintf(", round %d", r.round)
	}
	if r.detail != "" {
		s += ", " + r.detail
	}
	return s
}

// contestantError is one failed run of a competing contestant.
type contestantError struct {
	runID
	err string
}

// Contestant time-outs. A competitor's run gets a context that ends
// cfg.contestantTimeout after its start (-contestant-timeout: 20 min, 5
// min with -quick; longer than any scenario's own waits); a run that has
// not returned abandonGrace after that is abandoned (its goroutines are
// left behind, and the scenario's next database reset has resetTimeout to
// get past whatever they hold).
const (
	defaultContestantTimeout = 20 * time.Minute
	quickContestantTimeout   = 5 * time.Minute
	abandonGrace             = 30 * time.Second
)

// errTimedOut marks a run that outlived its deadline; the contestant's
// later runs in the same scenario are skipped (each would wait as long).
var errTimedOut = errors.New("timed out")

// failHook, when set (by tests only), makes the run it names fail with the
// error it returns, as if the contestant had returned it.
var failHook func(runID) error

// contestantErrors collects the failed runs of the competing contestants.
// It is safe for concurrent use.
type contestantErrors struct {
	timeout time.Duration // per run; 0: defaultContestantTimeout
	abandon time.Duration // wait past the deadline; 0: abandonGrace

	mu       sync.Mutex
	list     []contestantError
	timedOut map[string]int // scenario + contestant -> round that timed out
}

// attempt runs fn, one run of contestant id.sys.
//
// For eventbus it returns fn's error (wrapped with the run's name): the
// caller ends the scenario with it and the run fails.
//
// For a competitor it returns ok false and a nil error when fn failed: an
// error, a panic (in fn's goroutine; helpers that start goroutines turn
// theirs into errors with callSafe) or a time-out (see the constants
// above). The failure is recorded and the caller leaves the contestant's
// figures for this run empty. A competitor's earlier time-out in the same
// scenario skips the run (recorded too). Only the end of ctx itself (an
// interrupt) is returned as an error.
func (ce *contestantErrors) attempt(ctx context.Context, id runID, fn func(ctx context.Context) error) (ok bool, err error) {
	if id.sys == sysLib {
		if err := callSafe(func() error { return hooked(id, ctx, fn) }); err != nil {
			return false, fmt.Errorf("%s: %w", id, err)
		}
		return true, nil
	}
	key := id.scenario + "\x00" + systemNames[id.sys]
	ce.mu.Lock()
	round, skip := ce.timedOut[key]
	ce.mu.Unlock()
	if skip {
		if round > 0 {
			ce.record(id, fmt.Errorf("skipped: timed out in round %d", round))
		} else {
			ce.record(id, errors.New("skipped: timed out earlier in this scenario"))
		}
		return false, nil
	}
	limit := ce.timeout
	if limit <= 0 {
		limit = defaultContestantTimeout
	}
	runCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	grace := ce.abandon
	if grace <= 0 {
		grace = abandonGrace
	}
	done := make(chan error, 1) // buffered: an abandoned run's send never blocks
	go func() { done <- callSafe(func() error { return hooked(id, runCtx, fn) }) }()
	select {
	case err = <-done:
	case <-runCtx.Done():
		select {
		case err = <-done:
		case <-time.After(grace):
			err = fmt.Errorf("%w: did not return within %s of its %s deadline; abandoned", errTimedOut, grace, limit)
		}
	}
	if err == nil {
		return true, nil
	}
	if ctx.Err() != nil {
		return false, fmt.Errorf("%s: %w", id, ctx.Err())
	}
	if errors.Is(runCtx.Err(), context.DeadlineExceeded) && !errors.Is(err, errTimedOut) {
		err = fmt.Errorf("%w after %s: %w", errTimedOut, limit, err)
	}
	if errors.Is(err, errTimedOut) {
		ce.mu.Lock()
		if ce.timedOut == nil {
			ce.timedOut = map[string]int{}
		}
		ce.timedOut[key] = id.round
		ce.mu.Unlock()
	}
	ce.record(id, err)
	return false, nil
}

func hooked(id runID, ctx context.Context, fn func(ctx context.Context) error) error {
	if failHook != nil {
		if err := failHook(id); err != nil {
			return err
		}
	}
	return fn(ctx)
}

func (ce *contestantErrors) record(id runID, err error) {
	progress.Printf("%s failed (recorded, the run goes on): %v", id, err)
	ce.mu.Lock()
	defer ce.mu.Unlock()
	ce.list = append(ce.list, contestantError{runID: id, err: err.Error()})
}

// failures returns the recorded failures in the order they happened.
func (ce *contestantErrors) failures() []contestantError {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	return append([]contestantError(nil), ce.list...)
}

// callSafe calls fn and turns a panic into an error (its stack goes to the
// progress log).
func callSafe(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			progress.Printf("panic: %v\n%s", p, debug.Stack())
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return fn()
}

// writeContestantErrors prints the "Contestant errors" section: every
// failed run of a competitor, which the tables show as "—" and leave out
// of the delivery counts.
func writeContestantErrors(w io.Writer, ce *contestantErrors) {
	list := ce.failures()
	if len(list) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Contestant errors: these runs of a competitor failed; their figures show as — and their events are not in the delivery table. They do not fail the run.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Scenario | Contestant | Round | Run | Error |")
	fmt.Fprintln(w, "|---|---|---:|---|---|")
	for _, e := range list {
		round := ""
		if e.round > 0 {
			round = fmt.Sprint(e.round)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", e.scenario, systemNames[e.sys], round, e.detail, tableCell(e.err))
	}
}

// tableCell makes s fit in one markdown table cell.
func tableCell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", `\|`)
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// measure is attempt for a run that yields a result: the zero T and ok
// false when a competitor's run failed (recorded). Only a finished run's
// result is read, so an abandoned run cannot race with the caller.
//
// fn records its delivery counts in the deliveries it is given; they are
// added to dl when the run succeeds, so a failed (or abandoned) run leaves
// no line in the delivery table. dl may be nil for runs without counts.
func measure[T any](ctx context.Context, ce *contestantErrors, id runID, dl *deliveries, fn func(ctx context.Context, dl *deliveries) (T, error)) (v T, ok bool, err error) {
	var out T
	staged := &deliveries{}
	ok, err = ce.attempt(ctx, id, func(ctx context.Context) error {
		v, err := fn(ctx, staged)
		if err == nil {
			out = v
		}
		return err
	})
	if !ok {
		var zero T
		return zero, false, err
	}
	if dl != nil {
		dl.merge(staged)
	}
	return out, true, nil
}

// measureRate is measure for a rate: NaN ("—" in the tables) when a
// competitor's run failed.
func measureRate(ctx context.Context, ce *contestantErrors, id runID, dl *deliveries, fn func(ctx context.Context, dl *deliveries) (float64, error)) (float64, error) {
	v, ok, err := measure(ctx, ce, id, dl, fn)
	if !ok {
		return math.NaN(), err
	}
	return v, nil
}
