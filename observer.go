// The Observer interface and the events it is told (WithObserver and the
// bus's calls to it are in observe.go). Config holds an Observer, so these
// types lie below options.go.

package eventbus

import (
	"context"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// Observer is told what the bus does, for tracing and metrics (the module
// github.com/dddbus/eventbus/contrib/otel implements it with OpenTelemetry).
// Plug it in with WithObserver.
//
// Every method takes a context and one event struct. The bus calls them
// from several goroutines at once, never while it holds a lock of its own
// or inside one of its database transactions, and recovers a panic in any
// of them (logged at most once a minute; the bus goes on as if the method
// had returned normally). Methods should return quickly: they run on the
// bus's hot paths.
//
// Embed BaseObserver in an implementation, so that methods added to this
// interface later have a no-op default and the type keeps compiling.
type Observer interface {
	// DispatchStart is called by Dispatch and DispatchBegin after the
	// arguments are checked for emptiness and before anything is
	// validated or written. It may add entries to the events' Metadata
	// (trace context, say): they are stored with the events. The context
	// it returns is used for the writes and handed to DispatchEnd.
	DispatchStart(ctx context.Context, e DispatchStart) context.Context
	// DispatchEnd is called when that Dispatch or DispatchBegin returns.
	DispatchEnd(ctx context.Context, e DispatchEnd)
	// HandlerStart is called before each handler call. The context it
	// returns is the handler's (so a span started here is the handler's
	// current span) and is handed to HandlerEnd.
	HandlerStart(ctx context.Context, e HandlerStart) context.Context
	// HandlerEnd is called when the bus knows what became of the call: the
	// handler returned and the retry strategy decided, or the bus stopped
	// waiting for it.
	HandlerEnd(ctx context.Context, e HandlerEnd)
	// SequencerBatch is called after each batch of the sequencer that
	// sequenced events or failed.
	SequencerBatch(ctx context.Context, e SequencerBatch)
	// LeaseChange is called when this instance takes, loses or releases
	// its service's lease.
	LeaseChange(ctx context.Context, e LeaseChange)
}

// BaseObserver implements every Observer method as a no-op. Embed it.
type BaseObserver struct{}

// DispatchStart implements Observer.
func (BaseObserver) DispatchStart(ctx context.Context, _ DispatchStart) context.Context { return ctx }

// DispatchEnd implements Observer.
func (BaseObserver) DispatchEnd(context.Context, DispatchEnd) {}

// HandlerStart implements Observer.
func (BaseObserver) HandlerStart(ctx context.Context, _ HandlerStart) context.Context { return ctx }

// HandlerEnd implements Observer.
func (BaseObserver) HandlerEnd(context.Context, HandlerEnd) {}

// SequencerBatch implements Observer.
func (BaseObserver) SequencerBatch(context.Context, SequencerBatch) {}

// LeaseChange implements Observer.
func (BaseObserver) LeaseChange(context.Context, LeaseChange) {}

// DispatchStart describes a Dispatch or DispatchBegin call.
type DispatchStart struct {
	Service string    // the dispatching bus's service
	Time    time.Time // when the call started (a span's start: one clock reading for both)
	// Events are the caller's events. The observer may add Metadata
	// entries; it must not change anything else. Metadata is a map shared
	// with the caller: an event dispatched from two goroutines at once
	// must not be observed.
	Events []*ddd.DomainEvent
	// Transactional is true for DispatchBegin: the events are pending
	// until Commit (or the TX checker) publishes them.
	Transactional bool
}

// DispatchEnd says how a Dispatch or DispatchBegin call ended.
type DispatchEnd struct {
	Service       string
	Events        []*ddd.DomainEvent
	Transactional bool
	Err           error     // nil: stored (with the caller's transaction, if ctx carried one)
	Time          time.Time // when the call ended
	Duration      time.Duration
}

// HandlerStart describes a handler call about to start.
type HandlerStart struct {
	Service string
	Event   *ddd.DomainEvent
	Seq     int64     // the event's log position
	Attempt int       // 1 for the first delivery, n+1 for the n-th retry (1 again after a replay)
	Time    time.Time // when the call starts
}

// Outcome is what became of one handler call.
type Outcome int8

const (
	// OutcomeHandled: the handler returned nil.
	OutcomeHandled Outcome = iota + 1
	// OutcomeSkipped: no handler exists for the event (ddd.ErrNoHandler).
	OutcomeSkipped
	// OutcomeRetry: the call failed and the retry strategy schedules
	// another attempt (HandlerEnd.RetryIn after the failure).
	OutcomeRetry
	// OutcomeDeadLetter: the call failed and the retry strategy gave up
	// (or the error was ddd.Permanent): the event becomes a dead letter.
	OutcomeDeadLetter
	// OutcomeAbandoned: the bus stopped waiting for the call without a
	// result: a stop's ShutdownGrace ran out (the event is left to the next
	// owner), or, with HandlerTimeout 0, the call was set aside (its result
	// is recorded by a later retry phase when it returns, and not observed
	// then). A call abandoned past HandlerTimeout is a failed attempt
	// instead: OutcomeRetry or OutcomeDeadLetter, with an Err saying so.
	OutcomeAbandoned
)

func (o Outcome) String() string {
	switch o {
	case OutcomeHandled:
		return "handled"
	case OutcomeSkipped:
		return "skipped"
	case OutcomeRetry:
		return "retry"
	case OutcomeDeadLetter:
		return "dead_letter"
	case OutcomeAbandoned:
		return "abandoned"
	}
	return "unknown"
}

// Failed reports whether the call failed (retry or dead letter).
func (o Outcome) Failed() bool { return o == OutcomeRetry || o == OutcomeDeadLetter }

// HandlerEnd says what became of a handler call. The outcome is this
// attempt's: it becomes durable when the batch commits; should that
// commit be lost (the lease was lost, the database went away), the event
// is delivered again and observed again.
type HandlerEnd struct {
	Service  string
	Event    *ddd.DomainEvent
	Seq      int64
	Attempt  int
	Outcome  Outcome
	Err      error         // the handler's error (failed outcomes), else nil
	RetryIn  time.Duration // OutcomeRetry: the delay before the next attempt
	Time     time.Time     // when the handler returned (or the bus stopped waiting)
	Duration time.Duration // from HandlerStart.Time to Time
}

// SequencerBatch describes one batch of the sequencer.
type SequencerBatch struct {
	Service  string // the instance that ran it (any service sequences for all)
	Events   int    // events sequenced
	Duration time.Duration
	Err      error
}

// LeaseChangeKind says how a lease changed.
type LeaseChangeKind int8

const (
	// LeaseAcquired: this instance took the lease and consumes the service.
	LeaseAcquired LeaseChangeKind = iota + 1
	// LeaseLost: another instance (or an operator's Seek) took the lease,
	// or this one could not renew it in time.
	LeaseLost
	// LeaseReleased: this instance gave the lease up on a graceful stop.
	LeaseReleased
)

func (k LeaseChangeKind) String() string {
	switch k {
	case LeaseAcquired:
		return "acquired"
	case LeaseLost:
		return "lost"
	case LeaseReleased:
		return "released"
	}
	return "unknown"
}

// LeaseChange describes a change of this instance's lease.
type LeaseChange struct {
	Service string
	Owner   string // this instance's name
	Kind    LeaseChangeKind
	Epoch   int64 // the lease's epoch (fencing token)
	Offset  int64 // the stored offset when acquired, else the last one this instance knew
	// Partition is the partition's row ("<service>#<p>/<N>") when the
	// service has several partitions (see Config.Partitions), else "".
	Partition string
}
