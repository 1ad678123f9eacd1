package eventbus

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// offsetWriter moves the service's offset in the background, so that the
// consume loop goes on reading and handling while the update commits (a
// synchronous commit, which can stall for milliseconds on a busy disk).
// While an update runs, later requests coalesce: the next update writes
// the latest offset asked for. Updates run one at a time and their offsets
// only grow, so each is fenced by "consumed_seq <= offset" as before. The
// loop waits for the writer only before a commit that stores retries (the
// next batch's FIFO check must see them), when the lease changes hands, and
// when it stops. A failure drops the lease: the next owner redelivers what
// was handled since the last offset that committed.
type offsetWriter struct {
	mu   sync.Mutex
	l    *lease
	want int64         // the latest offset asked for
	done chan struct{} // closed when the running update loop ends; nil when idle
	err  error         // the failure that ended the loop
}

// write asks for the offset of l to become offset.
func (b *EventBus) writeOffset(ctx context.Context, l *lease, offset int64) {
	w := &b.offsets
	w.mu.Lock()
	defer w.mu.Unlock()
	w.l, w.want = l, offset
	if w.done != nil {
		return // the running loop picks it up
	}
	done := make(chan struct{})
	w.done = done
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for {
			w.mu.Lock()
			target := w.want
			w.mu.Unlock()
			start := time.Now()
			err := b.moveOffset(ctx, b.sqlDB, l, target)
			w.mu.Lock()
			if err == nil {
				l.renewed(start)
			}
			if err != nil || w.want == target {
				w.err, w.done = err, nil
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
		}
	}()
}

// offsetFailure returns, without waiting, the failure of the last update
// loop if it ran under the bus's current lease.
func (b *EventBus) offsetFailure() error {
	w := &b.offsets
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.err
	w.err = nil
	if err != nil && w.l == b.lease {
		return err
	}
	return nil
}

// awaitOffset waits until no update runs and returns offsetFailure.
func (b *EventBus) awaitOffset() error {
	w := &b.offsets
	w.mu.Lock()
	done := w.done
	w.mu.Unlock()
	if done != nil {
		<-done
	}
	return b.offsetFailure()
}

// moveOffset sets l's offset, fenced by its owner and epoch; ErrLeaseLost
// if another instance holds the lease.
func (b *EventBus) moveOffset(ctx context.Context, db execer, l *lease, offset int64) error {
	res, err := b.execOnPrepared(ctx, db, b.q.commitOffset, offset, b.opts.LeaseDuration.Milliseconds(), b.service, b.owner, l.epoch, offset)
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
