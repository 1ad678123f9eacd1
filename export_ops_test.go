package eventbus

import "github.com/dddbus/eventbus/internal/store/sqlstore"

// OpsQueries are the statements of the operations API (Lags,
// TransactionCounts, Transactions, DeadLettersWhere), by name, with
// example arguments, for TestOperationsQueriesUseIndexes.
func OpsQueries(b *EventBus) map[string][2]any { return b.st.(*sqlstore.Store).OpsQueries() }
