package eventbus

import (
	"context"
	"time"
)

// bounded limits one database operation of the poll loop to LeaseDuration
// (at least 5s): a connection that hangs without a reset (a network
// partition) then fails, and the loop backs off and retries, instead of
// waiting for the operating system to give up on it.
func (b *EventBus) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, max(b.opts.LeaseDuration, 5*time.Second))
}
