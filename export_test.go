package eventbus

import (
	"context"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// Hooks for the external test package: the tests there need dbtest, which
// imports this package, so they cannot live inside it.

// SequenceNow runs the sequencer once, as a poll would.
func SequenceNow(ctx context.Context, b *EventBus) (int, error) {
	total := 0
	for {
		n, more, err := b.sequenceBatch(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// IndexedQueries are the statements that run on every poll or clean and
// must use an index, by name.
func IndexedQueries(b *EventBus) map[string]string {
	m := map[string]string{
		"fetchEvents":     b.q.fetchEvents,
		"hasUnsequenced":  b.q.hasUnsequenced,
		"pickUnsequenced": b.q.pickUnsequenced,
		"cleanCandidates": b.q.cleanCandidates,
	}
	return m
}

// HandledUnderLeaseOfAge runs evts through the batch machinery (not the
// log) under a lease last renewed age ago, and returns how many of them
// were handled.
func HandledUnderLeaseOfAge(ctx context.Context, b *EventBus, age time.Duration, evts []*ddd.DomainEvent) int {
	recs := make([]*record, len(evts))
	for i, e := range evts {
		recs[i] = &record{pk: int64(i + 1), seq: int64(i + 1), evt: e}
	}
	l := &lease{renewedAt: time.Now().Add(-age)}
	n := 0
	for _, r := range b.runLeased(ctx, l, recs, nil, nil) {
		if r.verdict == handled {
			n++
		}
	}
	return n
}

// ShortenSetAside makes b set a call aside after d instead of a minute
// (HandlerTimeout 0).
func ShortenSetAside(b *EventBus, d time.Duration) { b.setAsideAfter = d }
