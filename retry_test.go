package eventbus_test

import (
	"testing"
	"time"

	"github.com/dddbus/eventbus"
)

// The documented semantics: Next(failures) is asked after each failed
// attempt; Limit N means N retries, N+1 attempts in all.
func TestRetryStrategySemantics(t *testing.T) {
	type step struct {
		delay time.Duration
		retry bool
	}
	cases := []struct {
		name     string
		strategy eventbus.IRetryStrategy
		want     []step // answers for failures 1, 2, ...
	}{
		{"LimitRetry 3", &eventbus.LimitRetry{Limit: 3}, []step{{0, true}, {0, true}, {0, true}, {0, false}}},
		{"LimitRetry 0", &eventbus.LimitRetry{Limit: 0}, []step{{0, false}}},
		{"IntervalRetry 2x1s", &eventbus.IntervalRetry{Limit: 2, Interval: time.Second},
			[]step{{time.Second, true}, {time.Second, true}, {time.Second, false}}},
		{"CustomRetry", &eventbus.CustomRetry{Intervals: []time.Duration{time.Second, time.Minute}},
			[]step{{time.Second, true}, {time.Minute, true}, {0, false}}},
		{"CustomRetry empty", &eventbus.CustomRetry{}, []step{{0, false}}},
	}
	for _, tc := range cases {
		for i, w := range tc.want {
			d, ok := tc.strategy.Next(i + 1)
			if ok != w.retry || (ok && d != w.delay) {
				t.Errorf("%s: Next(%d) = (%s, %t), want (%s, %t)", tc.name, i+1, d, ok, w.delay, w.retry)
			}
		}
	}
	d := eventbus.DefaultRetryStrategy()
	retries := 0
	for f := 1; ; f++ {
		if _, ok := d.Next(f); !ok {
			break
		}
		retries++
	}
	if retries != 5 {
		t.Errorf("default strategy retries %d times, want 5", retries)
	}
}
