package eventbus

import (
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// record is one event as read from the log: the event plus its row id
// (insert order) and seq (delivery order).
type record struct {
	pk  int64
	seq int64
	evt *ddd.DomainEvent
}

// records converts what the store read. One allocation each: a record
// held by a set-aside call must not keep its whole batch alive.
func records(rows []store.Record) []*record {
	out := make([]*record, len(rows))
	for i, r := range rows {
		out[i] = &record{pk: r.PK, seq: r.Seq, evt: r.Event}
	}
	return out
}
