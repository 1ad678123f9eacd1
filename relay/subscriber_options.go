package relay

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/nats-io/nats.go/jetstream"
)

// Subscriber defaults.
const (
	DefaultConcurrency    = 16
	DefaultMaxAckPending  = 1000
	DefaultAckWait        = 30 * time.Second
	DefaultHandlerTimeout = time.Minute
)

type subscriberConfig struct {
	retry          eventbus.IRetryStrategy
	handlerTimeout time.Duration
	concurrency    int
	maxAckPending  int
	ackWait        time.Duration
	filter         string
	deliver        jetstream.DeliverPolicy
	deadStream     string
	deadSubject    string
	defaultDead    bool // dead letters go where NewSubscriber put them
	log            *slog.Logger
}

// SubscriberOption configures a Subscriber.
type SubscriberOption func(*subscriberConfig)

// WithRetryStrategy sets the retry schedule of failed events, as on a bus
// service. Default eventbus.DefaultRetryStrategy().
func WithRetryStrategy(s eventbus.IRetryStrategy) SubscriberOption {
	return func(c *subscriberConfig) { c.retry = s }
}

// WithHandlerTimeout bounds one handler call (its context is cancelled
// after it); 0 disables it. Default DefaultHandlerTimeout.
func WithHandlerTimeout(d time.Duration) SubscriberOption {
	return func(c *subscriberConfig) { c.handlerTimeout = d }
}

// WithConcurrency sets how many handler calls run at once (different
// senders; one sender's events never run at the same time). Default
// DefaultConcurrency.
func WithConcurrency(n int) SubscriberOption { return func(c *subscriberConfig) { c.concurrency = n } }

// WithMaxAckPending sets the consumer's MaxAckPending: how many messages
// may be delivered and not yet acknowledged. Default DefaultMaxAckPending.
func WithMaxAckPending(n int) SubscriberOption {
	return func(c *subscriberConfig) { c.maxAckPending = n }
}

// WithAckWait sets the consumer's AckWait. The subscriber keeps the
// messages it holds alive (InProgress) every third of it, so it bounds only
// how soon the messages of a subscriber that died are delivered again.
// Default DefaultAckWait.
func WithAckWait(d time.Duration) SubscriberOption {
	return func(c *subscriberConfig) { c.ackWait = d }
}

// WithFilterSubject restricts the consumer to a subject (wildcards
// allowed). Default: every subject of the stream.
func WithFilterSubject(s string) SubscriberOption { return func(c *subscriberConfig) { c.filter = s } }

// WithDeliverPolicy sets where a new durable consumer starts. Default
// jetstream.DeliverAllPolicy.
func WithDeliverPolicy(p jetstream.DeliverPolicy) SubscriberOption {
	return func(c *subscriberConfig) { c.deliver = p }
}

// WithDeadLetters sets the stream and the subject dead letters are kept
// in. Run creates the stream (capturing subject, file storage, no limits)
// if it does not exist, and fails if it exists and does not capture
// subject. Default: stream "<stream>_DEAD", created capturing
// "deadletter.<stream>.*", and subject "deadletter.<stream>.<durable>".
func WithDeadLetters(stream, subject string) SubscriberOption {
	return func(c *subscriberConfig) { c.deadStream, c.deadSubject, c.defaultDead = stream, subject, false }
}

// WithSubscriberLogger sets the subscriber's logger. Default slog.Default().
func WithSubscriberLogger(l *slog.Logger) SubscriberOption {
	return func(c *subscriberConfig) { c.log = l }
}

func (c *subscriberConfig) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{eventbus.ErrInvalidOption}, args...)...)
	}
	switch {
	case c.retry == nil:
		return bad("nil retry strategy")
	case c.handlerTimeout < 0:
		return bad("handler timeout must be >= 0, got %s", c.handlerTimeout)
	case c.concurrency < 1 || c.concurrency > 4096:
		return bad("concurrency must be 1..4096, got %d", c.concurrency)
	case c.maxAckPending < 1:
		return bad("max ack pending must be >= 1, got %d", c.maxAckPending)
	case c.ackWait < time.Second:
		return bad("ack wait must be at least 1s, got %s", c.ackWait)
	case c.log == nil:
		return bad("nil logger")
	}
	if err := ValidateSubject(c.deadSubject); err != nil {
		return bad("dead-letter subject: %v", err)
	}
	return nil
}
