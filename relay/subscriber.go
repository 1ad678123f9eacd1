package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrAlreadyRunning is returned by Run on a subscriber that is running.
var ErrAlreadyRunning = errors.New("relay: subscriber already running")

// Subscriber feeds the events of a JetStream durable consumer to a
// ddd.DomainEventHandler (typically ddd.Router.HandleEvent), as a bus
// service would: the handler code does not change when a bounded context
// moves from the database to NATS.
//
// Outcomes map onto JetStream as follows. nil, or ddd.ErrNoHandler: Ack.
// A failure asks the retry strategy with the number of failed attempts,
// counted as the message's delivery count (NumDelivered) plus the failures
// of this delivery; a retry of a normal event is a NakWithDelay by the
// strategy's delay (JetStream delivers it again then), a retry of a FIFO
// event runs here after the delay, holding back the sender's later events.
// When the strategy gives up, or the error is ddd.Permanent, or the message
// is not a relayed event, the message is copied to the dead-letter stream
// and then Termed. The consumer's MaxDeliver is unlimited: when the server
// stops at MaxDeliver it tells no one, so the strategy (through the
// delivery count) is what bounds the attempts.
//
// Ordering, within one Subscriber (one Run) of a durable consumer: one
// sender's events are never handled at the same time, and their first
// deliveries are handled in stream order, which is the order the relay
// published them, which is the bus's log order. A normal event that is
// retried is handled again after the sender's later events (as on the
// bus); a FIFO event that is retried holds back the sender's later events
// (they wait in this process, kept alive with InProgress) until it
// succeeds or becomes a dead letter. Messages delivered again because a
// subscriber stopped or died (Nak at Run's end, AckWait after a crash)
// may come after later events of their sender, and several Subscribers on
// one durable consumer share its messages with no order between them.
// Delivery is at least once: handlers use DomainEvent.ID as their
// idempotency key.
type Subscriber struct {
	js      jetstream.JetStream
	stream  string
	durable string
	handler ddd.DomainEventHandler
	cfg     subscriberConfig
	log     *slog.Logger
	running atomic.Bool

	handled, skipped, failed, dead atomic.Int64
}

// NewSubscriber returns a subscriber of the durable consumer durable on
// stream, which Run creates or updates, calling h for each event.
func NewSubscriber(js jetstream.JetStream, stream, durable string, h ddd.DomainEventHandler, opts ...SubscriberOption) (*Subscriber, error) {
	switch {
	case js == nil:
		return nil, fmt.Errorf("%w: nil JetStream", eventbus.ErrInvalidOption)
	case h == nil:
		return nil, fmt.Errorf("%w: nil handler", eventbus.ErrInvalidOption)
	case !validName(stream) || !validName(durable):
		return nil, fmt.Errorf("%w: stream %q and durable %q must be non-empty names without '.', '*', '>' or blanks",
			eventbus.ErrInvalidOption, stream, durable)
	}
	cfg := subscriberConfig{
		retry:          eventbus.DefaultRetryStrategy(),
		handlerTimeout: DefaultHandlerTimeout,
		concurrency:    DefaultConcurrency,
		maxAckPending:  DefaultMaxAckPending,
		ackWait:        DefaultAckWait,
		deliver:        jetstream.DeliverAllPolicy,
		deadStream:     stream + "_DEAD",
		deadSubject:    "deadletter." + stream + "." + durable,
		defaultDead:    true,
		log:            slog.Default(),
	}
	if err := apply(&cfg, opts); err != nil {
		return nil, err
	}
	if !validName(cfg.deadStream) {
		return nil, fmt.Errorf("%w: dead-letter stream %q", eventbus.ErrInvalidOption, cfg.deadStream)
	}
	return &Subscriber{js: js, stream: stream, durable: durable, handler: h, cfg: cfg,
		log: cfg.log.With("stream", stream, "durable", durable)}, nil
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// SubscriberStats counts what this subscriber did since it was created.
type SubscriberStats struct {
	Handled     int64 // handler returned nil
	Skipped     int64 // ddd.ErrNoHandler, or a replay meant for another durable
	Failed      int64 // failed attempts
	DeadLetters int64 // messages moved to the dead letters
}

// Stats returns a snapshot of the counters.
func (s *Subscriber) Stats() SubscriberStats {
	return SubscriberStats{Handled: s.handled.Load(), Skipped: s.skipped.Load(), Failed: s.failed.Load(), DeadLetters: s.dead.Load()}
}

// Run creates or updates the durable consumer and the dead-letter stream,
// then handles messages until ctx is cancelled. It then stops fetching,
// waits for the handler calls in flight, returns the messages it holds
// (Nak, so they are delivered again at once, FIFO ones after the rest of
// their delay) and returns nil. It returns an error only when it cannot
// start; once running, NATS outages are ridden out by the client.
func (s *Subscriber) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer s.running.Store(false)
	cons, err := s.setup(ctx)
	if err != nil {
		return err
	}
	l := newLanes(s)
	cc, err := cons.Consume(l.receive,
		jetstream.PullMaxMessages(min(s.cfg.maxAckPending, 1000)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.log.Warn("relay: subscriber: consume", "err", err)
		}))
	if err != nil {
		return fmt.Errorf("relay: consume %s/%s: %w", s.stream, s.durable, err)
	}
	quit, keepDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(keepDone); l.keepAlive(quit, s.cfg.ackWait/3) }()
	<-ctx.Done()
	l.stop()
	cc.Stop()
	<-cc.Closed()
	l.wait()
	close(quit)
	<-keepDone
	return nil
}

func (s *Subscriber) setup(ctx context.Context) (jetstream.Consumer, error) {
	if err := s.setupDeadLetters(ctx); err != nil {
		return nil, err
	}
	cons, err := s.js.CreateOrUpdateConsumer(ctx, s.stream, jetstream.ConsumerConfig{
		Durable:       s.durable,
		Description:   "eventbus relay subscriber",
		DeliverPolicy: s.cfg.deliver,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.ackWait,
		MaxDeliver:    -1,
		MaxAckPending: s.cfg.maxAckPending,
		FilterSubject: s.cfg.filter,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: consumer %s on stream %s: %w", s.durable, s.stream, err)
	}
	return cons, nil
}

// setupDeadLetters creates the dead-letter stream if it does not exist
// (capturing every durable's default subject, or the configured one), and
// checks that it captures this subscriber's dead-letter subject.
func (s *Subscriber) setupDeadLetters(ctx context.Context) error {
	stream, err := s.js.Stream(ctx, s.cfg.deadStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		subject := s.cfg.deadSubject
		if s.cfg.defaultDead {
			subject = "deadletter." + s.stream + ".*"
		}
		stream, err = s.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        s.cfg.deadStream,
			Description: "eventbus relay: dead letters of subscribers",
			Subjects:    []string{subject},
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			stream, err = s.js.Stream(ctx, s.cfg.deadStream) // another subscriber made it meanwhile
		}
	}
	if err != nil {
		return fmt.Errorf("relay: dead-letter stream %s: %w", s.cfg.deadStream, err)
	}
	for _, pattern := range stream.CachedInfo().Config.Subjects {
		if subjectMatches(pattern, s.cfg.deadSubject) {
			return nil
		}
	}
	return fmt.Errorf("%w: dead-letter stream %s does not capture the subject %s", eventbus.ErrInvalidOption,
		s.cfg.deadStream, s.cfg.deadSubject)
}

// process settles one delivery: handles it (retrying a FIFO event here),
// then acks, naks or dead-letters it.
func (s *Subscriber) process(l *lanes, d *delivery) {
	if to := d.msg.Headers().Get(HeaderReplayFor); to != "" && to != s.durable {
		s.skipped.Add(1)
		s.settle(d, "ack", d.msg.Ack())
		return
	}
	if d.decodeErr != nil {
		s.bury(l, d, int(d.md.NumDelivered), d.decodeErr)
		return
	}
	// Every earlier delivery counts as a failed attempt.
	failures := int(d.md.NumDelivered) - 1
	for {
		err := s.invoke(l, d.evt)
		if err == nil || errors.Is(err, ddd.ErrNoHandler) {
			s.settle(d, "ack", d.msg.Ack())
			return
		}
		failures++
		delay, retry := s.next(failures, err)
		if !retry {
			s.bury(l, d, failures, err)
			return
		}
		if d.evt.SendType != ddd.SendFIFO {
			s.settle(d, "nak", d.msg.NakWithDelay(delay))
			return
		}
		if left := l.pause(delay); left > 0 {
			s.settle(d, "nak", d.msg.NakWithDelay(left)) // stopping: JetStream keeps the rest of the delay
			return
		}
	}
}

// invoke calls the handler once, within the concurrency limit and the
// handler timeout; a panic is a failure carrying its stack.
func (s *Subscriber) invoke(l *lanes, evt *ddd.DomainEvent) (err error) {
	l.acquire()
	defer l.release()
	ctx := context.Background()
	if s.cfg.handlerTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.handlerTimeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())
		}
		switch {
		case err == nil:
			s.handled.Add(1)
		case errors.Is(err, ddd.ErrNoHandler):
			s.skipped.Add(1)
		default:
			s.failed.Add(1)
			s.log.Warn("relay: subscriber: handler failed", "event_id", evt.ID, "type", evt.Type, "sender", evt.Sender, "err", firstLine(err))
		}
	}()
	return s.handler(ctx, evt)
}

// next asks the retry strategy; a permanent error, or a strategy that
// panics, gives up.
func (s *Subscriber) next(failures int, err error) (delay time.Duration, retry bool) {
	if ddd.IsPermanent(err) {
		return 0, false
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("relay: subscriber: retry strategy panicked; giving up on the event", "panic", p)
			delay, retry = 0, false
		}
	}()
	delay, retry = s.cfg.retry.Next(failures)
	return max(delay, 0), retry
}

// settle logs a failed ack, nak or term: the message is then delivered
// again after AckWait (at least once).
func (s *Subscriber) settle(d *delivery, what string, err error) {
	if err != nil {
		s.log.Warn("relay: subscriber: "+what+" failed; the message will be delivered again",
			"stream_seq", d.md.Sequence.Stream, "err", err)
	}
}

func firstLine(err error) string {
	msg := err.Error()
	for i := 0; i < len(msg); i++ {
		if msg[i] == '\n' {
			return msg[:i]
		}
	}
	return msg
}
