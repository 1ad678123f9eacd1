package eventbus

import (
	"context"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store/sqlstore"
)

// Hooks for the external test package: the tests there need dbtest, which
// imports this package, so they cannot live inside it.

// SequenceNow runs the sequencer, as polls would, until nothing waits,
// and returns how many events it sequenced.
func SequenceNow(ctx context.Context, b *EventBus) (int, error) {
	total := 0
	for {
		n, more, err := b.sequenceStep(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// SequenceStep runs one sequencer step, as a poll does.
func SequenceStep(ctx context.Context, b *EventBus) (int, bool, error) { return b.sequenceStep(ctx) }

// TidyRuns runs the sequencer's upkeep with the given margins (a negative
// sweep skips the sweep) and reports whether it changed the runs.
func TidyRuns(ctx context.Context, b *EventBus, settle, expire, sweep time.Duration) (bool, error) {
	return b.tidyRuns(ctx, settle, expire, sweep)
}

// ProbeStatement is a statement that runs the sequencer's check for
// committed, unsequenced events without sequencing them (PostgreSQL).
func ProbeStatement(b *EventBus) string { return "SELECT " + b.opts.TablePrefix + "sequence_pending()" }

// IndexedQueries are the statements that run on every poll or clean and
// must use an index, by name.
func IndexedQueries(b *EventBus) map[string]string { return b.st.(*sqlstore.Store).HotQueries() }

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
