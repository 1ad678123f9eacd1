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

// BenchmarkHandlerCall measures what the instrumentation adds to one
// handler call (HandlerStart and HandlerEnd), without a database: the part
// of BenchmarkOverhead's drain cost that is this package's own.
//
//	cd contrib/otel && go test -run '^$' -bench HandlerCall -benchmem .
func BenchmarkHandlerCall(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	for _, c := range []struct {
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
	} {
		for _, producer := range []bool{false, true} {
			name := c.name + "/root"
			if producer {
				name = c.name + "/child"
			}
			b.Run(name, func(b *testing.B) {
				tp := c.tp()
				if sdk, ok := tp.(*sdktrace.TracerProvider); ok {
					b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
				}
				inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(tp), eventbusotel.WithMeterProvider(mp))
				must(b, err)
				evt, err := ddd.NewDomainEvent("order-1", orderPlaced{ID: "1"})
				must(b, err)
				if producer {
					// A producer's context in the metadata, as Dispatch writes it.
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
