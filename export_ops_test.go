package eventbus

// OpsQueries are the statements of the operations API (Lags,
// TransactionCounts, Transactions, DeadLettersWhere), by name, with
// example arguments, for TestOperationsQueriesUseIndexes.
func OpsQueries(b *EventBus) map[string][2]any {
	next, counts := b.txCountQueries()
	dead, deadArgs := b.deadLettersQuery("r.event_pk, r.seq", DeadLetterFilter{Types: []string{"T"}, Senders: []string{"sender-1"}})
	return map[string][2]any{
		"lag services":       {b.lagServicesQuery(), []any(nil)},
		"first after offset": {b.firstAfterQuery(), []any{2500}},
		"event by id":        {b.eventCreatedQuery(), []any{42}},
		"sequencer probe":    {b.q.oldestUnnumbered, []any(nil)},
		"next tx service":    {next, []any{""}},
		"tx counts":          {counts, []any{"explain", "explain"}},
		"transactions":       {b.transactionsQuery(2), []any{"explain", 0, 3, 0, 100}},
		"dead letter filter": {dead, append(append([]any{"explain", 0}, deadArgs...), 100)},
	}
}
