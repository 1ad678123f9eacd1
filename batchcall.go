package eventbus

import (
	"context"
	"fmt"
	"sync"

	"github.com/dddbus/eventbus/ddd"
)

// The call of a batch handler (see RegisterBatchHandler) under the lease.

// batchHandlerSet returns the batch handler (nil: per-event handling).
func (b *EventBus) batchHandlerSet() func(context.Context, []*ddd.DomainEvent) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.batch
}

// callBatch calls h with recs while a heartbeat keeps the lease; the call's
// context is cancelled when the stop's grace ends or the lease is lost.
func (b *EventBus) callBatch(ctx context.Context, l *lease, h func(context.Context, []*ddd.DomainEvent) (int, error), recs []*record) (n int, err error) {
	parent := b.handlerParent
	if parent == nil { // not under Start (a test hook)
		parent = context.WithoutCancel(ctx)
	}
	hctx, cancel := context.WithCancel(parent)
	defer cancel()
	var once sync.Once
	halt := func() { once.Do(cancel) }
	done := make(chan struct{})
	var hb routines
	others := b.otherLeases()
	hb.Go(func() { b.heartbeat(context.WithoutCancel(ctx), l, others, done, halt) })
	defer hb.Wait()
	defer close(done)

	evts := make([]*ddd.DomainEvent, len(recs))
	for i, r := range recs {
		evts[i] = r.evt
	}
	defer func() {
		if p := recover(); p != nil {
			n, err = 0, fmt.Errorf("eventbus: batch handler panicked: %v", p)
		}
	}()
	n, err = h(hctx, evts)
	if n < 0 || n > len(evts) {
		// Not wrapped: a Permanent err must not make evts[0] a dead letter.
		err = fmt.Errorf("eventbus: batch handler returned %d finished of %d events (err: %v)", n, len(evts), err)
		n = 0
	}
	return n, err
}
