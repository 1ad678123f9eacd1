package eventbus

import (
	"testing"
	"time"
)

// checkDelay is the wait after check n that answered unknown: TXCheckTimeout
// doubled per check, capped at an hour, and never shorter than the timeout.
func TestCheckDelayGrows(t *testing.T) {
	cases := []struct {
		base time.Duration
		want []time.Duration // after checks 1, 2, ...
	}{
		{time.Minute, []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute,
			16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}},
		{200 * time.Millisecond, []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}},
		// A timeout above the cap: the delay must not shrink below it.
		{2 * time.Hour, []time.Duration{2 * time.Hour, 2 * time.Hour, 2 * time.Hour}},
	}
	for _, c := range cases {
		for i, want := range c.want {
			if got := checkDelay(c.base, i+1); got != want {
				t.Errorf("checkDelay(%s, %d) = %s, want %s", c.base, i+1, got, want)
			}
		}
	}
	// Never decreasing, never below the timeout, no overflow however many checks.
	for _, base := range []time.Duration{time.Millisecond, time.Second, 45 * time.Minute, 3 * time.Hour, 1000 * time.Hour} {
		prev := time.Duration(0)
		for n := 1; n <= 200; n++ {
			d := checkDelay(base, n)
			if d < prev || d < base || d > max(base, time.Hour) {
				t.Fatalf("checkDelay(%s, %d) = %s after %s", base, n, d, prev)
			}
			prev = d
		}
	}
}
