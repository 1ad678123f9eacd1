package eventbusotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	eventbusotel "github.com/dddbus/eventbus/contrib/otel"
	"github.com/dddbus/eventbus/ddd"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestDispatchOfSeveralEventsCarriesOneContext: every event of one Dispatch
// call carries the producer span's context, stale trace fields replaced.
func TestDispatchOfSeveralEventsCarriesOneContext(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(tp))
	must(t, err)
	var evts []*ddd.DomainEvent
	for i := range 3 {
		evt, err := ddd.NewDomainEvent("s", Placed{i})
		must(t, err)
		evts = append(evts, evt)
	}
	evts[2].Metadata = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "old=1", "keep": "me"}
	ctx := inst.DispatchStart(context.Background(), eventbus.DispatchStart{Service: "orders", Events: evts, Time: time.Now()})
	inst.DispatchEnd(ctx, eventbus.DispatchEnd{Service: "orders", Events: evts, Time: time.Now()})
	sc := trace.SpanContextFromContext(ctx)
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	for i, evt := range evts {
		if got := evt.Metadata["traceparent"]; got != want {
			t.Errorf("event %d: traceparent %q, want %q", i, got, want)
		}
		if _, ok := evt.Metadata["tracestate"]; ok {
			t.Errorf("event %d kept a stale tracestate: %v", i, evt.Metadata)
		}
	}
	if evts[2].Metadata["keep"] != "me" {
		t.Errorf("other metadata lost: %v", evts[2].Metadata)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 || attrs(spans[0])["messaging.batch.message_count"].AsInt64() != 3 {
		t.Fatalf("spans %v, want one send span with a batch count of 3", spans)
	}
}

// TestUnsampledCallsAreCountedAndPropagated: with a producer that is not
// sampled, the consumer's span (parent-based) does not record, yet the call
// is counted and the context still says "not sampled".
func TestUnsampledCallsAreCountedAndPropagated(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	reader := sdkmetric.NewManualReader()
	inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(tp),
		eventbusotel.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	must(t, err)
	evt, err := ddd.NewDomainEvent("s", Placed{1})
	must(t, err)
	pctx := inst.DispatchStart(context.Background(), eventbus.DispatchStart{Service: "orders", Events: []*ddd.DomainEvent{evt}})
	inst.DispatchEnd(pctx, eventbus.DispatchEnd{Service: "orders", Events: []*ddd.DomainEvent{evt}})
	tpHeader := evt.Metadata["traceparent"]
	if len(tpHeader) != 55 || tpHeader[53:] != "00" {
		t.Fatalf("traceparent %q: want one that says not sampled", tpHeader)
	}
	hctx := inst.HandlerStart(context.Background(), eventbus.HandlerStart{Service: "billing", Event: evt, Seq: 1, Attempt: 1})
	span := trace.SpanFromContext(hctx)
	if span.IsRecording() || span.SpanContext().TraceID() != trace.SpanContextFromContext(pctx).TraceID() {
		t.Errorf("consumer span recording %v in trace %v; want an unsampled span of the producer's trace", span.IsRecording(), span.SpanContext().TraceID())
	}
	inst.HandlerEnd(hctx, eventbus.HandlerEnd{Service: "billing", Event: evt, Seq: 1, Attempt: 1, Outcome: eventbus.OutcomeHandled, Duration: time.Millisecond})
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported, want none", n)
	}
	var rm metricdata.ResourceMetrics
	must(t, reader.Collect(context.Background(), &rm))
	var calls uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == eventbusotel.MetricProcessTime {
				for _, p := range h.DataPoints {
					if v, _ := p.Attributes.Value(attribute.Key("eventbus.outcome")); v.AsString() == "handled" {
						calls += p.Count
					}
				}
			}
		}
	}
	if calls != 1 {
		t.Errorf("%s counted %d handled calls, want 1", eventbusotel.MetricProcessTime, calls)
	}
}

// TestBaggageCrossesWithItsPropagator: with a propagator that carries
// baggage, the producer's baggage reaches the handler's context, beside the
// producer's span as parent; with the default one it does not.
func TestBaggageCrossesWithItsPropagator(t *testing.T) {
	member, err := baggage.NewMember("tenant", "acme")
	must(t, err)
	bag, err := baggage.New(member)
	must(t, err)
	for _, c := range []struct {
		name string
		prop propagation.TextMapPropagator
		want string
	}{
		{"composite", propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}), "acme"},
		{"default", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewInMemoryExporter()))
			opts := []eventbusotel.Option{eventbusotel.WithTracerProvider(tp)}
			if c.prop != nil {
				opts = append(opts, eventbusotel.WithPropagator(c.prop))
			}
			inst, err := eventbusotel.New(opts...)
			must(t, err)
			evt, err := ddd.NewDomainEvent("s", Placed{1})
			must(t, err)
			pctx := inst.DispatchStart(baggage.ContextWithBaggage(context.Background(), bag), eventbus.DispatchStart{Service: "orders", Events: []*ddd.DomainEvent{evt}})
			inst.DispatchEnd(pctx, eventbus.DispatchEnd{Service: "orders", Events: []*ddd.DomainEvent{evt}})
			hctx := inst.HandlerStart(context.Background(), eventbus.HandlerStart{Service: "billing", Event: evt, Seq: 1, Attempt: 1})
			defer inst.HandlerEnd(hctx, eventbus.HandlerEnd{Service: "billing", Event: evt, Seq: 1, Attempt: 1, Outcome: eventbus.OutcomeHandled})
			if got := baggage.FromContext(hctx).Member("tenant").Value(); got != c.want {
				t.Errorf("handler's baggage tenant=%q, want %q (metadata %v)", got, c.want, evt.Metadata)
			}
			parent := trace.SpanContextFromContext(pctx)
			if sc := trace.SpanContextFromContext(hctx); sc.TraceID() != parent.TraceID() || sc.SpanID() == parent.SpanID() {
				t.Errorf("consumer span %v/%v, want a child in the producer's trace %v", sc.TraceID(), sc.SpanID(), parent.TraceID())
			}
		})
	}
}
