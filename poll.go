// What started a poll, and the retry phase's due rule that depends on it:
// shared by the service's poll (consumer.go) and a partition's
// (partition.go).

package eventbus

import (
	"context"
	"time"
)

// What started a poll.
type pollKind int8

const (
	pollTimer pollKind = iota // RunInterval passed: a full poll
	pollWoken                 // a wake-up: events were committed here, or sequenced
	pollQuick                 // the previous poll handled a full batch
)

// retryIfDue runs the retry phase under lease l if it is due: at a timer
// poll, while the last one found more, or RunInterval after it last ran.
// It reports whether more retries wait.
func (b *EventBus) retryIfDue(ctx context.Context, l *lease, kind pollKind, now time.Time) (bool, error) {
	if b.lease != l || (kind != pollTimer && !b.retryMore && now.Sub(b.lastRetried) < b.opts.RunInterval) {
		return false, nil
	}
	more, err := b.retryPhase(ctx, l)
	if err != nil {
		return false, err
	}
	b.lastRetried, b.retryMore = now, more
	return more, nil
}
