package relay

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/nats-io/nats.go/jetstream"
	"gorm.io/gorm"
)

// Relay publishes the events of a bus's log to NATS JetStream. It is a
// service of the bus: it has its own offset, lease (one instance of the
// relay works at a time; start several for failover), retry store and dead
// letters, and it sees every event committed after it was first
// registered (or from eventbus.WithStartPosition, through WithBusOptions).
//
// Each event is published to the subject its SubjectFunc names, with its
// id as Nats-Msg-Id. The relay is the bus's batch handler
// (eventbus.EventBus.RegisterBatchHandler): it publishes each batch
// pipelined (PublishMsgAsync), every sender of the batch in flight at once
// but at most one unacknowledged publish per sender, and reports the
// prefix of the batch, in log order, that JetStream acknowledged: the
// service's offset moves past an event only after its ack, so nothing
// committed is lost, whatever fails.
//
// While NATS fails (down, restarting, cut off, no stream for the subject)
// the batch returns what was acknowledged before the first failure, and
// the bus delivers the rest again after a backoff (its RunInterval,
// doubling up to 10s). A sender's next event is sent only after the
// previous one's ack, so one sender's events reach the subject in log
// order, even across failures and reconnects. Failures never reach the
// bus's retry store, where a later event of the sender could overtake the
// failed one. Only an event that can never be published (no valid
// subject, larger than the server's max payload or the stream's max
// message size) fails for good: it becomes a dead letter of the relay's
// service at once (Bus().DeadLetters, ReplayDeadLetters), and its sender's
// later events go on.
//
// Duplicates: after a failure, a crash or a lease takeover the unfinished
// rest of a batch is published again; JetStream drops each event whose id
// it saw within the stream's duplicate window (Duplicates, 2 minutes by
// default). A duplicate reaches the stream only if it is published again
// after that window: a relay that crashed mid-batch and restarts later
// than the window, a stream whose window is shorter than that, or an event
// routed to two streams.
type Relay struct {
	bus *eventbus.EventBus
	js  jetstream.JetStream
	cfg relayConfig

	published, duplicates, failures atomic.Int64
}

// New returns a relay of the outbox in db to js. It creates the relay's
// bus (the service named by WithServiceName) and registers its handler, so
// the service's offset starts now; Run starts relaying.
func New(db *gorm.DB, js jetstream.JetStream, opts ...Option) (*Relay, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", eventbus.ErrInvalidOption)
	}
	cfg := relayConfig{
		service:        DefaultServiceName,
		subject:        SubjectFromType(DefaultSubjectPrefix),
		publishTimeout: DefaultPublishTimeout,
		maxBackoff:     DefaultMaxBackoff,
		maxInFlight:    DefaultMaxInFlight,
		log:            slog.Default(),
	}
	if err := apply(&cfg, opts); err != nil {
		return nil, err
	}
	busOpts := append([]eventbus.Option{
		eventbus.WithConsumeConcurrent(DefaultRelayConcurrency),
		eventbus.WithLimitPerRun(DefaultRelayBatch),
		eventbus.WithLogger(cfg.log),
	}, cfg.busOpts...)
	busOpts = append(busOpts, eventbus.WithHandlerTimeout(0))
	bus, err := eventbus.NewEventBus(cfg.service, db, busOpts...)
	if err != nil {
		return nil, err
	}
	r := &Relay{bus: bus, js: js, cfg: cfg}
	r.cfg.log = cfg.log.With("relay", cfg.service)
	if err := bus.RegisterBatchHandler(r.publishBatch); err != nil {
		return nil, err
	}
	return r, nil
}

// Run relays until ctx is cancelled, then returns nil (see
// eventbus.EventBus.Start). The batch in flight gets the bus's
// ShutdownGrace (default 15s) for its acks; then its call is cancelled and
// what was not acknowledged stays in the log, so the next run, here or on
// another instance, publishes it again. Ending the process instead is as
// safe: the batch in flight is published again at the next start, and
// JetStream drops what it already holds (the message ID is the event ID)
// within its duplicate window.
func (r *Relay) Run(ctx context.Context) error { return r.bus.Start(ctx) }

// Bus returns the relay's bus: its service status (Services), dead letters
// and Dispatch, for a process that produces through the relay's bus.
func (r *Relay) Bus() *eventbus.EventBus { return r.bus }

// Notify wakes the relay at once; call it after committing events in this
// process (see eventbus.EventBus.Notify) if they were dispatched through
// another bus than Bus().
func (r *Relay) Notify() { r.bus.Notify() }

// RelayStats counts what this relay instance did since it was created.
type RelayStats struct {
	Published  int64 // acknowledged by JetStream as new messages
	Duplicates int64 // acknowledged as duplicates (already in the stream)
	Failures   int64 // failed publish attempts (each retry counts)
}

// Stats returns a snapshot of the counters.
func (r *Relay) Stats() RelayStats {
	return RelayStats{Published: r.published.Load(), Duplicates: r.duplicates.Load(), Failures: r.failures.Load()}
}

// subjectOf calls the SubjectFunc; a panic in it is an error, so that the
// event becomes a dead letter like one whose subject is invalid.
func (r *Relay) subjectOf(evt *ddd.DomainEvent) (subject string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("SubjectFunc panicked: %v", p)
		}
	}()
	return r.cfg.subject(evt)
}
