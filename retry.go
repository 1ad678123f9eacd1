package eventbus

import (
	"fmt"
	"time"
)

// IRetryStrategy decides what happens after a handler fails.
//
// Next is called with the number of failed attempts so far (1 after the first
// failure). It returns the delay before the next attempt and true, or false
// to give up, which makes the event a dead letter. The delay counts from the
// failure, on the database's clock; the retry runs at the first poll after it
// is due, so its precision is RunInterval.
type IRetryStrategy interface {
	Next(failures int) (delay time.Duration, retry bool)
}

// LimitRetry retries up to Limit times with no delay (at the next poll).
// Limit: 3 means at most 4 attempts in all: the first one and 3 retries.
type LimitRetry struct {
	Limit int
}

// Next implements IRetryStrategy.
func (r *LimitRetry) Next(failures int) (time.Duration, bool) {
	return 0, failures <= r.Limit
}

// IntervalRetry retries up to Limit times, Interval after each failure.
// Limit: 3, Interval: time.Second means 4 attempts in all, each retry one
// second after the failure before it.
type IntervalRetry struct {
	Limit    int
	Interval time.Duration
}

// Next implements IRetryStrategy.
func (r *IntervalRetry) Next(failures int) (time.Duration, bool) {
	return r.Interval, failures <= r.Limit
}

// CustomRetry retries once per entry of Intervals: retry i runs Intervals[i-1]
// after failure i. Intervals {1s, 10s, 1m} means 4 attempts in all.
type CustomRetry struct {
	Intervals []time.Duration
}

// Next implements IRetryStrategy.
func (r *CustomRetry) Next(failures int) (time.Duration, bool) {
	if failures < 1 || failures > len(r.Intervals) {
		return 0, false
	}
	return r.Intervals[failures-1], true
}

// DefaultRetryStrategy is used when no strategy is set: five retries spread
// over about a quarter of an hour.
func DefaultRetryStrategy() IRetryStrategy {
	return &CustomRetry{Intervals: []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute}}
}

// validateRetryStrategy rejects the built-in strategies' bad settings.
func validateRetryStrategy(s IRetryStrategy) error {
	switch r := s.(type) {
	case nil:
		return fmt.Errorf("%w: nil retry strategy", ErrInvalidOption)
	case *LimitRetry:
		if r == nil || r.Limit < 0 {
			return fmt.Errorf("%w: LimitRetry.Limit must be >= 0", ErrInvalidOption)
		}
	case *IntervalRetry:
		if r == nil || r.Limit < 0 || r.Interval < 0 {
			return fmt.Errorf("%w: IntervalRetry needs Limit >= 0 and Interval >= 0", ErrInvalidOption)
		}
	case *CustomRetry:
		if r == nil {
			return fmt.Errorf("%w: nil CustomRetry", ErrInvalidOption)
		}
		for i, d := range r.Intervals {
			if d < 0 {
				return fmt.Errorf("%w: CustomRetry.Intervals[%d] is negative", ErrInvalidOption, i)
			}
		}
	}
	return nil
}
