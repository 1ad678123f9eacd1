// The backoff of a loop that failed (the consume loop, the TX checker, the
// wake-up listener).

package eventbus

import (
	"math/rand/v2"
	"time"
)

// nextBackoff doubles from base up to 10s, with ±20% jitter so that many
// instances do not reconnect in step.
func nextBackoff(prev, base time.Duration) time.Duration {
	next := min(max(prev*2, base), 10*time.Second)
	return time.Duration(float64(next) * (0.8 + 0.4*rand.Float64()))
}
