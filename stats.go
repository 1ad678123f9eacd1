package eventbus

import "sync/atomic"

// Stats counts what this bus instance has done since it was created.
type Stats struct {
	Handled     int64 // handler returned nil
	Skipped     int64 // handler returned ddd.ErrNoHandler
	Failed      int64 // handler failed or panicked (each attempt counts)
	Parked      int64 // FIFO events parked behind a failed one of their sender
	DeadLetters int64 // events that became dead letters here
	Sequenced   int64 // events this instance numbered
}

type counters struct {
	handled, skipped, failed, parked, dead, sequenced atomic.Int64
}

// Stats returns a snapshot of the counters.
func (b *EventBus) Stats() Stats {
	c := &b.stats
	return Stats{
		Handled:     c.handled.Load(),
		Skipped:     c.skipped.Load(),
		Failed:      c.failed.Load(),
		Parked:      c.parked.Load(),
		DeadLetters: c.dead.Load(),
		Sequenced:   c.sequenced.Load(),
	}
}
