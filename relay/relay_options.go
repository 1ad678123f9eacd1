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
	// one publish waits for its ack per sender at a time, so throughput
	// comes from many senders in flight.
	DefaultRelayConcurrency = 64
	// DefaultRelayBatch is the bus's LimitPerRun for a relay.
	DefaultRelayBatch = 1000
)

type relayConfig struct {
	service        string
	subject        SubjectFunc
	publishTimeout time.Duration
	maxBackoff     time.Duration
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

// WithMaxBackoff caps the wait between publish attempts while NATS fails;
// it starts at 50ms and doubles. Default DefaultMaxBackoff.
func WithMaxBackoff(d time.Duration) Option { return func(c *relayConfig) { c.maxBackoff = d } }

// WithBusOptions passes options to the relay's eventbus.EventBus, after the
// relay's own defaults (ConsumeConcurrent DefaultRelayConcurrency,
// LimitPerRun DefaultRelayBatch, the logger). HandlerTimeout is always 0:
// a publish is retried until it is acknowledged (see Relay).
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
