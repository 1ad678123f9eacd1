package eventbus

import "context"

// Hooks for the external test package: the tests there need dbtest, which
// imports this package, so they cannot live inside it.

// SequenceNow runs the sequencer once, as a poll would.
func SequenceNow(ctx context.Context, b *EventBus) (int, error) { return b.sequence(ctx, true) }

// IndexedQueries are the statements that run on every poll or clean and
// must use an index, by name.
func IndexedQueries(b *EventBus) map[string]string {
	m := map[string]string{
		"fetchEvents":     b.q.fetchEvents,
		"hasUnsequenced":  b.q.hasUnsequenced,
		"pickUnsequenced": b.q.pickUnsequenced,
		"cleanCandidates": b.q.cleanCandidates,
	}
	if b.q.numberBatch != "" { // PostgreSQL picks and numbers in one statement
		m["numberBatch"] = b.q.numberBatch
	}
	return m
}
