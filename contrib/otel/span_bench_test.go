package eventbusotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	eventbusotel "github.com/dddbus/eventbus/contrib/otel"
	"github.com/dddbus/eventbus/ddd"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

type orderPlaced struct{ ID string }

// tracerProviders are the tracing sides of the call benchmarks: every span
// sampled, a tenth of the traces (parent-based), none, and a no-op provider
// (metrics alone). Each call returns a new provider.
var tracerProviders = []struct {
	name string
	tp   func() trace.TracerProvider
}{
	{"on", func() trace.TracerProvider {
		return sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	}},
	{"on-10%", func() trace.TracerProvider {
		return sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))))
	}},
	{"never", func() trace.TracerProvider {
		return sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.NeverSample()))
	}},
	{"metrics", func() trace.TracerProvider { return noop.NewTracerProvider() }},
}

// instrumentation returns one for tp, and shuts tp down after b.
func instrumentation(b *testing.B, tp trace.TracerProvider, mp *sdkmetric.MeterProvider) *eventbusotel.Instrumentation {
	if sdk, ok := tp.(*sdktrace.TracerProvider); ok {
		b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	}
	inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(tp), eventbusotel.WithMeterProvider(mp))
	must(b, err)
	return inst
}

func meterProvider(b *testing.B) *sdkmetric.MeterProvider {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp
}

// BenchmarkHandlerCall measures what the instrumentation adds to one
// handler call (HandlerStart and HandlerEnd), without a database: the part
// of BenchmarkOverhead's drain cost that is this package's and the
// OpenTelemetry SDK's. root: an event without a producer's context; child:
// with one (sampled), as Dispatch writes it.
//
//	cd contrib/otel && go test -run '^$' -bench 'HandlerCall|DispatchCall' -benchmem .
func BenchmarkHandlerCall(b *testing.B) {
	mp := meterProvider(b)
	for _, c := range tracerProviders {
		for _, producer := range []bool{false, true} {
			name := c.name + "/root"
			if producer {
				name = c.name + "/child"
			}
			b.Run(name, func(b *testing.B) {
				inst := instrumentation(b, c.tp(), mp)
				evt, err := ddd.NewDomainEvent("order-1", orderPlaced{ID: "1"})
				must(b, err)
				if producer {
					evt.Metadata = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
				}
				ctx := context.Background()
				now := time.Now()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					hctx := inst.HandlerStart(ctx, eventbus.HandlerStart{Service: "billing", Event: evt, Seq: 42, Attempt: 1, Time: now})
					inst.HandlerEnd(hctx, eventbus.HandlerEnd{Service: "billing", Event: evt, Seq: 42, Attempt: 1,
						Outcome: eventbus.OutcomeHandled, Time: now, Duration: time.Millisecond})
				}
			})
		}
	}
}

// BenchmarkDispatchCall measures what the instrumentation adds to a
// Dispatch of one event (DispatchStart, with the trace context written into
// the event's metadata, and DispatchEnd), without a database.
func BenchmarkDispatchCall(b *testing.B) {
	mp := meterProvider(b)
	for _, c := range tracerProviders {
		b.Run(c.name, func(b *testing.B) {
			inst := instrumentation(b, c.tp(), mp)
			evt, err := ddd.NewDomainEvent("order-1", orderPlaced{ID: "1"})
			must(b, err)
			evts := []*ddd.DomainEvent{evt}
			ctx := context.Background()
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				evt.Metadata = nil // as a new event comes: the trace context needs a map
				dctx := inst.DispatchStart(ctx, eventbus.DispatchStart{Service: "orders", Time: now, Events: evts})
				inst.DispatchEnd(dctx, eventbus.DispatchEnd{Service: "orders", Events: evts, Time: now, Duration: time.Millisecond})
			}
		})
	}
}
