package eventbusotel_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dddbus/eventbus"
	eventbusotel "github.com/dddbus/eventbus/contrib/otel"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"gorm.io/gorm"
)

var (
	overheadRounds = flag.Int("overhead.rounds", 7, "rounds of BenchmarkOverhead; each runs both configurations")
	overheadEvents = flag.Int("overhead.events", 4000, "events per configuration and round")
)

// discard is a span exporter that drops what the batcher hands it.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// configuration is one side of the comparison: nil obs is "off".
type configuration struct {
	name string
	obs  eventbus.Observer
}

// configurations returns off and the instrumentation as a production
// program would set it up: metrics aggregated by the SDK (a reader that is
// not collected here) and spans batched to an exporter, every one sampled
// ("on") or a tenth of the traces, parent-based ("on-10%"); and metrics
// alone, with a no-op tracer provider ("metrics"); and an observer that
// does nothing ("hooks": what the bus's calls of an Observer cost).
func configurations(b *testing.B) []configuration {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	out := []configuration{{name: "off"}}
	for _, c := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"on", sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.AlwaysSample()))},
		{"on-10%", sdktrace.NewTracerProvider(sdktrace.WithBatcher(discard{}), sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))))},
		{"metrics", noop.NewTracerProvider()},
	} {
		if sdk, ok := c.tp.(*sdktrace.TracerProvider); ok {
			b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
		}
		inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(c.tp), eventbusotel.WithMeterProvider(mp))
		must(b, err)
		out = append(out, configuration{c.name, inst})
	}
	return append(out, configuration{"hooks", eventbus.BaseObserver{}})
}

func quietOptions(extra ...eventbus.Option) []eventbus.Option {
	return append([]eventbus.Option{eventbus.WithCleanCron(""), eventbus.WithRunInterval(20 * time.Millisecond),
		eventbus.WithStartPosition(eventbus.StartFromEarliest), eventbus.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}, extra...)
}

// BenchmarkOverhead measures what tracing and metrics cost, side by side:
// each round runs every configuration (off, on, on-10%, metrics, hooks: see
// configurations) one after the other, in an order that rotates, on the
// same database; the medians over the rounds are reported with their
// ratios to off.
//
//	cd contrib/otel && go test -run '^$' -bench Overhead -benchtime 1x .
//
// dispatch: 8 producers store -overhead.events events, one per Dispatch
// call (its own transaction). drain: a new service consumes a sequenced
// backlog of -overhead.events events from 256 senders with a handler that
// does nothing (the worst case: the bus's own work is all there is);
// drain-1ms: the same with a handler that waits 1ms, as one that calls
// another service would. MySQL and PostgreSQL run when
// EVENTBUS_MYSQL_DSN / EVENTBUS_POSTGRES_DSN are set.
func BenchmarkOverhead(b *testing.B) {
	for _, target := range dbtest.Targets {
		b.Run(target.Name, func(b *testing.B) {
			db := target.New(b).Open(b)
			configs := configurations(b)
			b.Run("dispatch", func(b *testing.B) {
				sides(b, configs, func(c configuration, round int) sample { return dispatchRate(b, db, c.obs, round) })
			})
			backlog(b, db, *overheadEvents)
			b.Run("drain", func(b *testing.B) {
				sides(b, configs, func(c configuration, round int) sample { return drainRate(b, db, c, round, 0, *overheadEvents) })
			})
			b.Run("drain-1ms", func(b *testing.B) {
				sides(b, configs, func(c configuration, round int) sample {
					return drainRate(b, db, c, round, time.Millisecond, min(*overheadEvents, 2000))
				})
			})
		})
	}
}

// sample is one measurement: events per second, and this process's CPU
// time per event (user and system, from getrusage): on a machine shared
// with other work the CPU time says more about what the instrumentation
// costs than the rate, which other processes slow down at random.
type sample struct {
	rate, cpu float64 // events/s, µs/event
}

// measured runs fn, which handles n events, and returns its sample; the
// rate counts from when fn reports the work started (start) to its return.
func measured(b *testing.B, n int, fn func(start func())) sample {
	var before, after syscall.Rusage
	must(b, syscall.Getrusage(syscall.RUSAGE_SELF, &before))
	began := time.Now()
	fn(func() { began = time.Now() })
	elapsed := time.Since(began)
	must(b, syscall.Getrusage(syscall.RUSAGE_SELF, &after))
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	return sample{rate: float64(n) / elapsed.Seconds(), cpu: float64(cpu.Microseconds()) / float64(n)}
}

// sides runs measure for every configuration in each round, in an order
// that rotates, and reports the medians and each one's ratio to the
// first (off).
func sides(b *testing.B, configs []configuration, measure func(c configuration, round int) sample) {
	samples := make([][]sample, len(configs))
	for round := range *overheadRounds {
		for k := range configs {
			j := (k + round) % len(configs)
			samples[j] = append(samples[j], measure(configs[j], round))
		}
		line := fmt.Sprintf("round %d:", round)
		for j, c := range configs {
			line += fmt.Sprintf(" %s %.0f/s %.1fµs", c.name, samples[j][round].rate, samples[j][round].cpu)
		}
		b.Log(line)
	}
	medians := func(j int) (rate, cpu float64) {
		var r, c []float64
		for _, s := range samples[j] {
			r, c = append(r, s.rate), append(c, s.cpu)
		}
		return median(r), median(c)
	}
	offRate, offCPU := medians(0)
	b.ReportMetric(offRate, "off-events/s")
	b.ReportMetric(offCPU, "off-cpu-µs/event")
	summary := fmt.Sprintf("medians: off %.0f events/s, %.1f CPU-µs/event", offRate, offCPU)
	for j, c := range configs[1:] {
		rate, cpu := medians(j + 1)
		b.ReportMetric(rate/offRate, c.name+"/off")
		b.ReportMetric(cpu-offCPU, c.name+"-extra-cpu-µs/event")
		summary += fmt.Sprintf("; %s %.0f events/s (%s/off %.3f, rate cost %.1f%%), %.1f CPU-µs/event (+%.1f%%)",
			c.name, rate, c.name, rate/offRate, 100*(1-rate/offRate), cpu, 100*(cpu/offCPU-1))
	}
	b.Log(summary)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func busFor(b *testing.B, db *gorm.DB, service string, obs eventbus.Observer, extra ...eventbus.Option) *eventbus.EventBus {
	if obs != nil {
		extra = append(extra, eventbus.WithObserver(obs))
	}
	bus, err := eventbus.NewEventBus(service, db, quietOptions(extra...)...)
	must(b, err)
	return bus
}

func dispatchRate(b *testing.B, db *gorm.DB, obs eventbus.Observer, round int) sample {
	bus := busFor(b, db, "producer", obs)
	const producers = 8
	n := *overheadEvents
	return measured(b, n, func(func()) {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, producers)
		for p := range producers {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					evt, err := ddd.NewDomainEvent(fmt.Sprintf("r%d-p%d", round, p), Placed{N: p})
					if err == nil {
						err = bus.Dispatch(context.Background(), evt)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		must(b, <-errs)
	})
}

// backlog stores n events, sequenced, for the drain rounds, after the
// dispatch rounds' events (which the drain services skip).
func backlog(b *testing.B, db *gorm.DB, n int) {
	ctx := context.Background()
	bus, err := eventbus.NewEventBus("backlog", db, quietOptions()...)
	must(b, err)
	// Every drain service starts after the dispatch rounds' events.
	must(b, db.Exec("DELETE FROM ddd_events").Error)
	batch := make([]*ddd.DomainEvent, 0, 100)
	for i := range n {
		evt, err := ddd.NewDomainEvent(fmt.Sprintf("sender-%03d", i%256), Placed{N: i})
		must(b, err)
		batch = append(batch, evt)
		if len(batch) == cap(batch) || i == n-1 {
			must(b, bus.Dispatch(ctx, batch...))
			batch = batch[:0]
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = bus.Start(runCtx) }) // a producer: it only sequences
	waitFor(b, "the backlog sequenced", func() bool {
		var left int64
		must(b, db.Raw("SELECT COUNT(*) FROM ddd_events WHERE seq IS NULL").Scan(&left).Error)
		return left == 0
	})
	cancel()
	wg.Wait()
}

// drainRate drains the first n events of the backlog with a new service
// whose handler waits work, and removes the service. The rate counts from
// the first handler call.
func drainRate(b *testing.B, db *gorm.DB, c configuration, round int, work time.Duration, n int) sample {
	service := fmt.Sprintf("drain-%d-%d-%s", round, work.Milliseconds(), strings.TrimSuffix(c.name, "%"))
	bus := busFor(b, db, service, c.obs)
	return measured(b, n, func(started func()) {
		var handled atomic.Int64
		var first sync.Once
		done := make(chan struct{})
		must(b, bus.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error {
			first.Do(started)
			if work > 0 {
				time.Sleep(work)
			}
			if handled.Add(1) == int64(n) {
				close(done)
			}
			return nil
		}))
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = bus.Start(ctx) })
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("%s drained %d of %d events in 5 minutes", service, handled.Load(), n)
		}
		cancel()
		wg.Wait()
		must(b, bus.RemoveService(context.Background(), service))
	})
}
