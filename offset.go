package eventbus

import (
	"context"
	"fmt"
)

// moveOffset sets l's offset, fenced by its owner and epoch, in tx (nil: on
// its own); ErrLeaseLost if another instance holds the lease.
func (b *EventBus) moveOffset(ctx context.Context, tx txConn, l *lease, offset int64) error {
	res, err := b.exec(ctx, tx, b.q.commitOffset, offset, b.opts.LeaseDuration.Milliseconds(), b.service, b.owner, l.epoch, offset)
	if err != nil {
		return fmt.Errorf("commit offset: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return ErrLeaseLost
	}
	return nil
}
