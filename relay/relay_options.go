package relay

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/dddbus/eventbus"
)

// DefaultServiceName is the bus service a Relay consumes as.
const DefaultServiceName = "nats-relay"

// Relay defaults.
const (
	DefaultSubjectPrefix  = "events"
	DefaultPublishTimeout = 5 * time.Second
	DefaultMaxBackoff     = 5 * time.Second
	// DefaultRelayConcurrency is the bus's ConsumeConcurrent for a relay:
	// it applies to the retry phase only (replayed dead letters, published
	// one at a time); batches are pipelined (see WithMaxInFlight).
	DefaultRelayConcurrency = 64
	// DefaultRelayBatch is the bus's LimitPerRun for a relay: the events
	// one pipelined call publishes. Larger batches mean fewer pauses of
	// the pipeline while the offset is committed (4,000 drained 10-15%
	// faster than 1,000 in relaybench).
	DefaultRelayBatch = 4000
	// DefaultMaxInFlight bounds the publishes of a batch waiting for their
	// ack at once (one per sender at most).
	DefaultMaxInFlight = 1000
)

type relayConfig struct {
	service        string
	subject        SubjectFunc
	publishTimeout time.Duration
	maxBackoff     time.Duration
	maxInFlight    int
	busOpts        []eventbus.Option
	log            *slog.Logger
}

// Option configures a Relay.
type Option func(*relayConfig)

// WithServiceName sets the bus service the relay consumes as (its offset,
// lease, retries and dead letters). Default DefaultServiceName. Give each
// relay of one database a name of its own.
func WithServiceName(name string) Option { return func(c *relayConfig) { c.service = name } }

// WithSubjectFunc sets how an event's subject is named. Default
// SubjectFromType(DefaultSubjectPrefix). A subject that is not valid
// (ValidateSubject) makes the event a dead letter of the relay's service.
func WithSubjectFunc(f SubjectFunc) Option { return func(c *relayConfig) { c.subject = f } }

// WithPublishTimeout bounds one publish attempt (waiting for JetStream's
// ack). Default DefaultPublishTimeout.
func WithPublishTimeout(d time.Duration) Option { return func(c *relayConfig) { c.publishTimeout = d } }

// WithMaxBackoff is kept for compatibility and has no effect: while NATS
// fails, the bus backs off between batches (its RunInterval, doubling up
// to 10s; see eventbus.EventBus.RegisterBatchHandler).
//
// Deprecated: the relay no longer retries a publish in place.
func WithMaxBackoff(d time.Duration) Option { return func(c *relayConfig) { c.maxBackoff = d } }

// WithMaxInFlight bounds how many publishes of a batch wait for their ack
// at once (each of another sender). Default DefaultMaxInFlight.
func WithMaxInFlight(n int) Option { return func(c *relayConfig) { c.maxInFlight = n } }

// WithBusOptions passes options to the relay's eventbus.EventBus, after the
// relay's own defaults (ConsumeConcurrent DefaultRelayConcurrency,
// LimitPerRun DefaultRelayBatch, the logger). HandlerTimeout is always 0
// (it does not apply to batches; the retry phase's one-event calls are
// never abandoned).
func WithBusOptions(opts ...eventbus.Option) Option {
	return func(c *relayConfig) { c.busOpts = append(c.busOpts, opts...) }
}

// WithLogger sets the relay's logger, also used by its bus unless
// WithBusOptions sets another. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return func(c *relayConfig) { c.log = l } }

func (c *relayConfig) validate() error {
	switch {
	case c.subject == nil:
		return fmt.Errorf("%w: nil SubjectFunc", eventbus.ErrInvalidOption)
	case c.publishTimeout <= 0:
		return fmt.Errorf("%w: publish timeout must be positive, got %s", eventbus.ErrInvalidOption, c.publishTimeout)
	case c.maxBackoff <= 0:
		return fmt.Errorf("%w: max backoff must be positive, got %s", eventbus.ErrInvalidOption, c.maxBackoff)
	case c.maxInFlight < 1:
		return fmt.Errorf("%w: max in flight must be at least 1, got %d", eventbus.ErrInvalidOption, c.maxInFlight)
	case c.log == nil:
		return fmt.Errorf("%w: nil logger", eventbus.ErrInvalidOption)
	}
	return nil
}

// apply runs opts on cfg, then validates it.
func apply[C any, PC interface {
	*C
	validate() error
}, O ~func(*C)](cfg PC, opts []O) error {
	for _, o := range opts {
		if o == nil {
			return fmt.Errorf("%w: nil option", eventbus.ErrInvalidOption)
		}
		o(cfg)
	}
	return cfg.validate()
}
