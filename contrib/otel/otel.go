// Package eventbusotel instruments github.com/dddbus/eventbus with
// OpenTelemetry: traces that cross the bus (the producer's trace context
// travels in each event's Metadata as W3C traceparent/tracestate, and each
// handler call gets a consumer span, child of the producer's), and metrics
// through the OpenTelemetry metrics API.
//
//	inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(tp), eventbusotel.WithMeterProvider(mp))
//	bus, err := eventbus.NewEventBus("billing", db, eventbus.WithObserver(inst))
//	reg, err := inst.ObserveStore(bus) // once per database: lag, retries, dead letters, transactions
//	defer reg.Unregister()
//
// It is a module of its own, so a program that does not use it pulls in no
// OpenTelemetry. Spans and attributes follow the OpenTelemetry messaging
// semantic conventions (see README.md, "Operating it", for the list).
package eventbusotel

import (
	"errors"
	"sync"

	"github.com/dddbus/eventbus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/dddbus/eventbus/contrib/otel"

// System is the value of messaging.system.
const System = "eventbus"

// Attribute keys the bus adds where the messaging conventions have none.
const (
	// SenderKey is the event's sender (aggregate): its ordering key. On
	// spans only: a per-sender metric label would be unbounded.
	SenderKey = attribute.Key("eventbus.sender")
	// SeqKey is the event's log position.
	SeqKey = attribute.Key("eventbus.seq")
	// AttemptKey is the delivery attempt: 1, then 2 for the first retry...
	AttemptKey = attribute.Key("eventbus.delivery.attempt")
	// OutcomeKey is what became of a handler call (eventbus.Outcome).
	OutcomeKey = attribute.Key("eventbus.outcome")
	// ServiceKey is the service of a producer or of a transaction.
	ServiceKey = attribute.Key("eventbus.service")
	// TxStateKey is pending or unresolved.
	TxStateKey = attribute.Key("eventbus.transaction.state")
	// LeaseChangeKey is acquired, lost or released.
	LeaseChangeKey = attribute.Key("eventbus.lease.change")
	// RetryInKey is the delay before the next attempt, in seconds.
	RetryInKey = attribute.Key("eventbus.retry_in")
)

// Option configures New.
type Option func(*config)

type config struct {
	tp       trace.TracerProvider
	mp       metric.MeterProvider
	prop     propagation.TextMapPropagator
	linkOnly bool
}

// WithTracerProvider sets where spans go. Default otel.GetTracerProvider().
// With noop.NewTracerProvider() the instrumentation records metrics alone,
// and skips the span work (trace context is then neither written nor read).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithMeterProvider sets where metrics go. Default otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithPropagator sets how trace context is written into and read from
// event metadata. Default propagation.TraceContext{} (W3C traceparent and
// tracestate), whatever the global propagator is. Whatever else it carries
// reaches the handler's context too: with
// propagation.NewCompositeTextMapPropagator(propagation.TraceContext{},
// propagation.Baggage{}) the producer's baggage does.
func WithPropagator(p propagation.TextMapPropagator) Option { return func(c *config) { c.prop = p } }

// WithLinkOnly starts each consumer span in a new trace, linked to the
// producer's span, instead of as its child (the default). Use it when one
// event fans out to many handlers and a trace per delivery reads better.
func WithLinkOnly() Option { return func(c *config) { c.linkOnly = true } }

// Instrumentation is an eventbus.Observer that traces and measures the
// bus. One may serve several buses (services); it is safe for concurrent use.
type Instrumentation struct {
	eventbus.BaseObserver
	tracer   trace.Tracer
	noTrace  bool // the tracer provider is the no-op one: metrics alone
	prop     propagation.TextMapPropagator
	linkOnly bool
	meter    metric.Meter
	m        instruments
	sets     sync.Map // attrKey -> *measureOpts, the metrics' attribute sets
	fields   []string // the propagator's metadata keys
	starts   sync.Map // startKey -> *spanStart
}

// New returns the instrumentation; add it to a bus with eventbus.WithObserver.
func New(opts ...Option) (*Instrumentation, error) {
	c := config{prop: propagation.TraceContext{}}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("eventbusotel: nil option")
		}
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		return nil, errors.New("eventbusotel: nil propagator")
	}
	_, noTrace := c.tp.(noop.TracerProvider)
	i := &Instrumentation{
		tracer:   c.tp.Tracer(ScopeName),
		noTrace:  noTrace,
		prop:     c.prop,
		fields:   c.prop.Fields(),
		linkOnly: c.linkOnly,
		meter:    c.mp.Meter(ScopeName),
	}
	if err := i.m.init(i.meter); err != nil {
		return nil, err
	}
	return i, nil
}

var _ eventbus.Observer = (*Instrumentation)(nil)
