package eventbus

// Stats counts what this bus instance has done since it was created.
type Stats struct {
	Handled     int64 // handler returned nil
	Skipped     int64 // no handler exists for the event (the handler returned only ddd.ErrNoHandler)
	Failed      int64 // handler failed, panicked or was abandoned (each attempt counts)
	Parked      int64 // events stored to run later: FIFO events behind a failed one of their sender, or events whose sender has a call that has not returned
	DeadLetters int64 // events that became dead letters here
	Sequenced   int64 // events this instance sequenced
	// Abandoned counts handler calls the bus stopped waiting for: still
	// running HandlerTimeout plus its grace after they started (each is
	// also a Failed attempt), or when a stop's ShutdownGrace ran out (their
	// events are left to the next owner).
	Abandoned int64
	// SetAside counts calls set aside with HandlerTimeout 0: still running
	// after a minute; their events waited in the retry store.
	SetAside int64
	// Unreturned is how many abandoned or set-aside calls have not
	// returned yet: a gauge, not a count of past events.
	Unreturned int64
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
		Abandoned:   c.abandoned.Load(),
		SetAside:    c.setAside.Load(),
		Unreturned:  c.unreturned.Load(),
	}
}
