package eventbusotel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	eventbusotel "github.com/dddbus/eventbus/contrib/otel"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"gorm.io/gorm"
)

type Placed struct {
	N int `json:"n"`
}

func (Placed) EventType() string { return "shop.Placed" }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func busOptions(inst *eventbusotel.Instrumentation, extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{eventbus.WithObserver(inst), eventbus.WithRunInterval(20 * time.Millisecond),
		eventbus.WithLeaseDuration(2 * time.Second), eventbus.WithCleanCron(""), eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 0}), eventbus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, extra...)
}

// traced runs a producer and a consumer (billing) on db, both observed by
// inst; billing fails the events of sender "bad" for good, and its handler
// starts a span of its own. It dispatches one good and one bad event
// inside a caller's span and returns them once both were handled.
func traced(t *testing.T, db *gorm.DB, tp trace.TracerProvider, inst *eventbusotel.Instrumentation) (good, bad *ddd.DomainEvent) {
	ctx := context.Background()
	orders, err := eventbus.NewEventBus("orders", db, busOptions(inst)...)
	must(t, err)
	billing, err := eventbus.NewEventBus("billing", db, busOptions(inst)...)
	must(t, err)
	var mu sync.Mutex
	done := 0
	must(t, billing.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		defer func() { mu.Lock(); done++; mu.Unlock() }()
		if evt.Sender == "bad" {
			return ddd.Permanent(errors.New("card declined"))
		}
		_, span := tp.Tracer("billing").Start(ctx, "invoice")
		span.End()
		return nil
	}))
	good, err = ddd.NewDomainEvent("good", Placed{1})
	must(t, err)
	bad, err = ddd.NewDomainEvent("bad", Placed{2})
	must(t, err)
	cctx, caller := tp.Tracer("app").Start(ctx, "place order")
	must(t, orders.Dispatch(cctx, good))
	must(t, orders.Dispatch(cctx, bad))
	caller.End()
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = billing.Start(runCtx) })
	waitFor(t, "both events handled", func() bool { mu.Lock(); defer mu.Unlock(); return done == 2 })
	cancel()
	wg.Wait()
	return good, bad
}

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string, match func(tracetest.SpanStub) bool) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name && (match == nil || match(s)) {
			return s
		}
	}
	t.Fatalf("no span %q among %d", name, len(spans))
	return tracetest.SpanStub{}
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func withMessage(id string) func(tracetest.SpanStub) bool {
	return func(s tracetest.SpanStub) bool { return attrs(s)["messaging.message.id"].AsString() == id }
}

// TestSpans: the producer span is the caller's child and its context is
// in the event's metadata; the consumer span is the producer's child
// (same trace, linked too), carries the messaging attributes, is the
// handler's current span, and records a dead letter as an error.
func TestSpans(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			exp := tracetest.NewInMemoryExporter()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(tp))
			must(t, err)
			good, bad := traced(t, target.New(t).Open(t), tp, inst)
			spans := exp.GetSpans()

			caller := spanNamed(t, spans, "place order", nil)
			send := spanNamed(t, spans, "send shop.Placed", withMessage(good.ID))
			if send.SpanKind != trace.SpanKindProducer || send.Parent.SpanID() != caller.SpanContext.SpanID() {
				t.Errorf("producer span: kind %v, parent %v; want a producer span, child of the caller's", send.SpanKind, send.Parent.SpanID())
			}
			if tp := good.Metadata["traceparent"]; tp == "" || tp[3:35] != send.SpanContext.TraceID().String() || tp[36:52] != send.SpanContext.SpanID().String() {
				t.Errorf("metadata traceparent %q, want the producer span %s", tp, send.SpanContext.SpanID())
			}
			process := spanNamed(t, spans, "process shop.Placed", withMessage(good.ID))
			if process.SpanKind != trace.SpanKindConsumer || process.Parent.SpanID() != send.SpanContext.SpanID() ||
				process.SpanContext.TraceID() != caller.SpanContext.TraceID() {
				t.Errorf("consumer span: kind %v, parent %v, trace %v; want a consumer child of %v in trace %v",
					process.SpanKind, process.Parent.SpanID(), process.SpanContext.TraceID(), send.SpanContext.SpanID(), caller.SpanContext.TraceID())
			}
			want := map[attribute.Key]string{
				"messaging.system": "eventbus", "messaging.operation.name": "process", "messaging.operation.type": "process",
				"messaging.destination.name": "shop.Placed", "messaging.message.id": good.ID,
				"messaging.consumer.group.name": "billing", "eventbus.sender": "good", "eventbus.outcome": "handled",
			}
			got := attrs(process)
			for k, v := range want {
				if got[k].Emit() != v {
					t.Errorf("consumer span %s = %q, want %q", k, got[k].Emit(), v)
				}
			}
			if got["eventbus.delivery.attempt"].AsInt64() != 1 || got["eventbus.seq"].AsInt64() <= 0 {
				t.Errorf("consumer span attempt %v, seq %v", got["eventbus.delivery.attempt"], got["eventbus.seq"])
			}
			if a := attrs(send); a["messaging.operation.name"].AsString() != "send" || a["messaging.destination.name"].AsString() != "shop.Placed" ||
				a["messaging.system"].AsString() != "eventbus" || a["eventbus.service"].AsString() != "orders" {
				t.Errorf("producer span attributes %v", send.Attributes)
			}
			invoice := spanNamed(t, spans, "invoice", nil)
			if invoice.Parent.SpanID() != process.SpanContext.SpanID() {
				t.Errorf("the handler's own span is not a child of the consumer span")
			}
			failed := spanNamed(t, spans, "process shop.Placed", withMessage(bad.ID))
			if failed.Status.Code != codes.Error || attrs(failed)["eventbus.outcome"].AsString() != "dead_letter" || attrs(failed)["error.type"].AsString() == "" {
				t.Errorf("dead-lettered span: status %+v, attributes %v", failed.Status, failed.Attributes)
			}
			events := map[string]bool{}
			for _, e := range failed.Events {
				events[e.Name] = true
			}
			if !events["exception"] || !events["dead_letter"] {
				t.Errorf("dead-lettered span events %v, want exception and dead_letter", failed.Events)
			}
		})
	}
}

// TestSpansLinkOnly: with WithLinkOnly the consumer span starts a trace
// of its own, linked to the producer's span.
func TestSpansLinkOnly(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(tp), eventbusotel.WithLinkOnly())
	must(t, err)
	good, _ := traced(t, dbtest.SQLite(t).Open(t), tp, inst)
	spans := exp.GetSpans()
	send := spanNamed(t, spans, "send shop.Placed", withMessage(good.ID))
	process := spanNamed(t, spans, "process shop.Placed", withMessage(good.ID))
	if process.Parent.IsValid() || process.SpanContext.TraceID() == send.SpanContext.TraceID() {
		t.Errorf("consumer span has parent %v in trace %v: want a new trace", process.Parent.SpanID(), process.SpanContext.TraceID())
	}
	if len(process.Links) != 1 || process.Links[0].SpanContext.SpanID() != send.SpanContext.SpanID() {
		t.Errorf("consumer span links %+v, want the producer span", process.Links)
	}
}

// TestMetrics reads the instruments through a manual reader.
func TestMetrics(t *testing.T) {
	for _, target := range dbtest.Targets {
		t.Run(target.Name, func(t *testing.T) {
			t.Parallel()
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			inst, err := eventbusotel.New(eventbusotel.WithMeterProvider(mp), eventbusotel.WithTracerProvider(noop.NewTracerProvider()))
			must(t, err)
			db := target.New(t).Open(t)
			good, _ := traced(t, db, noop.NewTracerProvider(), inst)
			if tp, ok := good.Metadata["traceparent"]; ok {
				t.Errorf("metrics alone (a no-op tracer provider) wrote trace context %q", tp)
			}
			// A service that never consumes, and a pending transaction.
			idle, err := eventbus.NewEventBus("idle", db, busOptions(inst)...)
			must(t, err)
			must(t, idle.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }))
			evt, err := ddd.NewDomainEvent("tx", Placed{3})
			must(t, err)
			_, err = idle.DispatchBegin(context.Background(), evt)
			must(t, err)
			reg, err := inst.ObserveStore(idle, eventbusotel.WithRefreshInterval(0))
			must(t, err)
			defer func() { must(t, reg.Unregister()) }()

			var rm metricdata.ResourceMetrics
			must(t, reader.Collect(context.Background(), &rm))
			sums := map[string]map[string]float64{} // metric -> attribute set -> value
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					sums[m.Name] = map[string]float64{}
					switch d := m.Data.(type) {
					case metricdata.Sum[int64]:
						for _, p := range d.DataPoints {
							sums[m.Name][p.Attributes.Encoded(attribute.DefaultEncoder())] += float64(p.Value)
						}
					case metricdata.Gauge[int64]:
						for _, p := range d.DataPoints {
							sums[m.Name][p.Attributes.Encoded(attribute.DefaultEncoder())] = float64(p.Value)
						}
					case metricdata.Gauge[float64]:
						for _, p := range d.DataPoints {
							sums[m.Name][p.Attributes.Encoded(attribute.DefaultEncoder())] = p.Value
						}
					case metricdata.Histogram[float64]:
						for _, p := range d.DataPoints {
							sums[m.Name][p.Attributes.Encoded(attribute.DefaultEncoder())] += float64(p.Count)
						}
					case metricdata.Histogram[int64]:
						for _, p := range d.DataPoints {
							sums[m.Name][p.Attributes.Encoded(attribute.DefaultEncoder())] += float64(p.Sum)
						}
					}
				}
			}
			checks := []struct {
				metric, attrs string
				want          float64
				atLeast       bool
			}{
				{eventbusotel.MetricProcessTime, "eventbus.outcome=handled,messaging.consumer.group.name=billing,messaging.destination.name=shop.Placed,messaging.operation.name=process,messaging.system=eventbus", 1, false},
				{eventbusotel.MetricProcessTime, "error.type=*ddd.permanentError,eventbus.outcome=dead_letter,messaging.consumer.group.name=billing,messaging.destination.name=shop.Placed,messaging.operation.name=process,messaging.system=eventbus", 1, false},
				{eventbusotel.MetricSent, "eventbus.service=orders,messaging.destination.name=shop.Placed,messaging.operation.name=send,messaging.system=eventbus", 2, false},
				{eventbusotel.MetricSent, "eventbus.service=idle,messaging.destination.name=shop.Placed,messaging.operation.name=create,messaging.system=eventbus", 1, false},
				{eventbusotel.MetricSequencerSize, "messaging.system=eventbus", 2, false},
				{eventbusotel.MetricLeaseChanges, "eventbus.lease.change=acquired,messaging.consumer.group.name=billing,messaging.system=eventbus", 1, true},
				{eventbusotel.MetricLeaseChanges, "eventbus.lease.change=released,messaging.consumer.group.name=billing,messaging.system=eventbus", 1, true},
				{eventbusotel.MetricDeadLetters, "messaging.consumer.group.name=billing,messaging.system=eventbus", 1, false},
				{eventbusotel.MetricLag, "messaging.consumer.group.name=billing,messaging.system=eventbus", 0, false},
				{eventbusotel.MetricLag, "messaging.consumer.group.name=idle,messaging.system=eventbus", 2, false},
				{eventbusotel.MetricLagAge, "messaging.consumer.group.name=idle,messaging.system=eventbus", 0, true},
				{eventbusotel.MetricTransactions, "eventbus.service=idle,eventbus.transaction.state=pending,messaging.system=eventbus", 1, false},
				{eventbusotel.MetricTransactions, "eventbus.service=idle,eventbus.transaction.state=unresolved,messaging.system=eventbus", 0, false},
			}
			for _, c := range checks {
				got, ok := sums[c.metric][c.attrs]
				if !ok || (!c.atLeast && got != c.want) || (c.atLeast && got < c.want) {
					t.Errorf("%s{%s} = %v (reported: %v), want %v", c.metric, c.attrs, got, ok, c.want)
				}
			}
			if t.Failed() {
				t.Logf("collected: %v", sums)
			}
		})
	}
}
