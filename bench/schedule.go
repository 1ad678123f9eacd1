package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// schedule says when each event's transaction starts and how long it
// waits before its commit. It is drawn from a seed, so that every
// contestant of a round gets the same.
type schedule struct {
	at    []time.Duration // start, from the beginning of the run
	delay []time.Duration // wait before the commit; nil: none
}

// poisson schedules total transactions at rate per second on average. The
// start times form a Poisson process (exponential gaps): no poller can
// fall into step with evenly spaced commits (which would make its latency
// depend on an arbitrary phase instead of averaging over it).
func poisson(total, rate int, seed uint64) *schedule {
	rng := rand.New(rand.NewPCG(seed, 26))
	s := &schedule{at: make([]time.Duration, total)}
	var next time.Duration
	for i := range s.at {
		s.at[i] = next
		next += time.Duration(rng.ExpFloat64() / float64(rate) * float64(time.Second))
	}
	return s
}

// Slow commits: slowShare of the transactions wait a uniform slowMin to
// slowMax after their writes, before their commit, so that transactions
// running at the same time commit out of the order in which they took
// their ids.
const (
	slowShare = 0.25
	slowMin   = time.Millisecond
	slowMax   = 10 * time.Millisecond
)

// withSlowCommits draws the commit delays of s from seed.
func (s *schedule) withSlowCommits(seed uint64) *schedule {
	rng := rand.New(rand.NewPCG(seed, 27))
	s.delay = make([]time.Duration, len(s.at))
	for i := range s.delay {
		if rng.Float64() < slowShare {
			s.delay[i] = slowMin + time.Duration(rng.Int64N(int64(slowMax-slowMin)))
		}
	}
	return s
}

// delayOf is event i's wait before its commit.
func (s *schedule) delayOf(i int) time.Duration {
	if s.delay == nil {
		return 0
	}
	return s.delay[i]
}

// steady calls fn(i) for every event of s at its start time, on producers
// goroutines. Event i goes to producer (i % senders) % producers, so that
// one producer commits all of a sender's events, one after the other: their
// order is the order of the commits.
func steady(ctx context.Context, s *schedule, producers, senders int, fn func(ctx context.Context, i int) error) error {
	begin := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Go(func() {
			err := callSafe(func() error { // a panic is the contestant's error
				for i := range s.at {
					if (i%senders)%producers != p {
						continue
					}
					if d := time.Until(begin.Add(s.at[i])); d > 0 {
						select {
						case <-ctx.Done():
							return ctx.Err()
						case <-time.After(d):
						}
					}
					if err := fn(ctx, i); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
