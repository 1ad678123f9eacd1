package eventbusotel

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dddbus/eventbus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// StoreOption configures ObserveStore.
type StoreOption func(*storeConfig)

type storeConfig struct {
	every, timeout time.Duration
}

// WithRefreshInterval sets how often the store is read at most: a
// collection within it reports the values read last. Default 15s.
func WithRefreshInterval(d time.Duration) StoreOption { return func(c *storeConfig) { c.every = d } }

// WithQueryTimeout bounds one read of the store. Default 5s.
func WithQueryTimeout(d time.Duration) StoreOption { return func(c *storeConfig) { c.timeout = d } }

// storeReader reads the gauges of one database, at most once per interval.
type storeReader struct {
	bus *eventbus.EventBus
	cfg storeConfig
	i   *Instrumentation

	mu       sync.Mutex // held while reading: one read at a time
	readAt   time.Time
	services []eventbus.ServiceStatus
	lags     map[string]time.Duration
	txs      []eventbus.TxCounts
}

// ObserveStore registers the gauges read from the database of bus:
// per service the lag in events and in seconds (age of the oldest event
// not consumed), the retry store and the dead letters; per service that
// began any, the pending and unresolved transactional messages. They are
// read when metrics are collected, at most once per refresh interval
// (three indexed queries plus one per service, see eventbus's Services,
// Lags and TransactionCounts). Call it once per database, from any bus on
// it: every service on that database is reported. Unregister the returned
// registration to stop.
func (i *Instrumentation) ObserveStore(bus *eventbus.EventBus, opts ...StoreOption) (metric.Registration, error) {
	if bus == nil {
		return nil, errors.New("eventbusotel: ObserveStore: nil bus")
	}
	r := &storeReader{bus: bus, i: i, cfg: storeConfig{every: 15 * time.Second, timeout: 5 * time.Second}}
	for _, o := range opts {
		o(&r.cfg)
	}
	if r.cfg.every < 0 || r.cfg.timeout <= 0 {
		return nil, errors.New("eventbusotel: ObserveStore: the refresh interval must be >= 0 and the timeout positive")
	}
	return i.meter.RegisterCallback(r.observe, i.m.lag, i.m.lagAge, i.m.retries, i.m.deadLetters, i.m.txs)
}

func (r *storeReader) observe(ctx context.Context, o metric.Observer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.readAt) >= r.cfg.every {
		if err := r.read(ctx); err != nil {
			r.i.m.storeErrors.Add(ctx, 1)
			// Report nothing rather than stale values that look fresh.
			return err
		}
	}
	m := &r.i.m
	for _, s := range r.services {
		set := metric.WithAttributeSet(attribute.NewSet(systemAttr, semconv.MessagingConsumerGroupName(s.Name)))
		o.ObserveInt64(m.lag, s.Pending, set)
		o.ObserveFloat64(m.lagAge, r.lags[s.Name].Seconds(), set)
		o.ObserveInt64(m.retries, s.Retrying, set)
		o.ObserveInt64(m.deadLetters, s.DeadLetters, set)
	}
	for _, t := range r.txs {
		o.ObserveInt64(m.txs, t.Pending, metric.WithAttributes(systemAttr, ServiceKey.String(t.Service), TxStateKey.String("pending")))
		o.ObserveInt64(m.txs, t.Unresolved, metric.WithAttributes(systemAttr, ServiceKey.String(t.Service), TxStateKey.String("unresolved")))
	}
	return nil
}

func (r *storeReader) read(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.timeout)
	defer cancel()
	services, err := r.bus.Services(ctx)
	if err != nil {
		return err
	}
	lags, err := r.bus.Lags(ctx)
	if err != nil {
		return err
	}
	txs, err := r.bus.TransactionCounts(ctx)
	if err != nil {
		return err
	}
	r.services, r.txs, r.readAt = services, txs, time.Now()
	r.lags = make(map[string]time.Duration, len(lags))
	for _, l := range lags {
		r.lags[l.Name] = l.Age
	}
	return nil
}
