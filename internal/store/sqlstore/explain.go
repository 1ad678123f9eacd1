package sqlstore

import "github.com/dddbus/eventbus/internal/store"

// Statements with example arguments, by name, for the tests that EXPLAIN
// them and fail on a full scan.

// HotQueries are the statements every poll or clean runs; MySQL and SQLite
// add their sequencer probe.
func (s *base) HotQueries() map[string]string {
	return map[string]string{
		"fetchEvents":     s.q.fetchEvents,
		"cleanCandidates": s.q.cleanCandidates,
	}
}

// OpsQueries are the statements of the operations API (Lags,
// TransactionCounts, Transactions, DeadLettersWhere).
func (s *base) OpsQueries() map[string][2]any {
	dead, deadArgs := s.deadLettersQuery("r.event_pk, r.seq", store.DeadLetterFilter{Types: []string{"T"}, Senders: []string{"sender-1"}})
	return map[string][2]any{
		"lag services":       {s.q.lagServices, []any(nil)},
		"first after offset": {s.q.firstAfter, []any{2500}},
		"event by id":        {s.q.eventCreated, []any{42}},
		"sequencer probe":    {s.eng.oldestUnsequenced(), []any(nil)},
		"next tx service":    {s.q.nextTxService, []any{""}},
		"tx counts":          {s.q.txCounts, []any{"explain", "explain"}},
		"transactions":       {s.eng.listTxs(2), []any{"explain", 0, 3, 0, 100}},
		"dead letter filter": {dead, append(append([]any{"explain", 0}, deadArgs...), 100)},
	}
}
