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
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/dbtest"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
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

// configuration is one side of the comparison: nil obs is "off". Its
// drains read tables of their own (prefix), filled by a producer with the
// same observer, so the events carry the trace context (or none) that
// this configuration's producers would write.
type configuration struct {
	name   string
	obs    eventbus.Observer
	prefix string
}

// configurations returns off and the instrumentation as a production
// program would set it up: metrics aggregated by the SDK (a reader that is
// not collected here) and spans batched to an exporter, every one sampled
// ("on") or a tenth of the traces, parent-based ("on-10%"); and metrics
// alone, with a no-op tracer provider ("metrics"); and an observer that
// does nothing ("hooks": what the bus's calls of an Observer cost).
func configurations(b *testing.B) []configuration {
	mp := meterProvider(b)
	out := []configuration{{name: "off"}}
	for _, c := range tracerProviders {
		if c.name != "never" { // the per-call benchmarks' extra side
			out = append(out, configuration{name: c.name, obs: instrumentation(b, c.tp(), mp)})
		}
	}
	out = append(out, configuration{name: "hooks", obs: eventbus.BaseObserver{}})
	for j := range out {
		out[j].prefix = fmt.Sprintf("ov%d_", j)
	}
	return out
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
// dispatch: 8 producers store -overhead.events events (at most 10,000),
// one per Dispatch call (its own transaction). drain: a new service
// consumes a sequenced backlog of -overhead.events events from 256 senders
// (dispatched by a producer with the same instrumentation, so they carry
// its trace context) with a handler that does nothing (the worst case:
// the bus's own work is all there is); drain-1ms: the same with a handler that waits 1ms, as one that calls
// another service would; drain-write: a handler that inserts one row in
// its own transaction, as a projection does. MySQL and PostgreSQL run when
// EVENTBUS_MYSQL_DSN / EVENTBUS_POSTGRES_DSN are set.
func BenchmarkOverhead(b *testing.B) {
	for _, target := range dbtest.Targets {
		b.Run(target.Name, func(b *testing.B) {
			db := target.New(b).Open(b)
			configs := configurations(b)
			b.Run("dispatch", func(b *testing.B) {
				sides(b, configs, func(c configuration, round int) sample { return dispatchRate(b, db, c.obs, round) })
			})
			for _, c := range configs {
				backlog(b, db, c, *overheadEvents)
			}
			must(b, db.Exec("CREATE TABLE overhead_projection (event_id VARCHAR(64) NOT NULL, service VARCHAR(64) NOT NULL)").Error)
			for _, w := range []handlerWork{
				{"drain", *overheadEvents, func(context.Context, *ddd.DomainEvent) error { return nil }},
				{"drain-1ms", min(*overheadEvents, 2000), func(context.Context, *ddd.DomainEvent) error {
					time.Sleep(time.Millisecond)
					return nil
				}},
				{"drain-write", min(*overheadEvents, 4000), func(ctx context.Context, evt *ddd.DomainEvent) error {
					return db.WithContext(ctx).Exec("INSERT INTO overhead_projection (event_id, service) VALUES (?, ?)", evt.ID, "drain-write").Error
				}},
			} {
				b.Run(w.name, func(b *testing.B) {
					sides(b, configs, func(c configuration, round int) sample { return drainRate(b, db, c, round, w) })
				})
			}
		})
	}
}

// handlerWork is what a drain's handler does with each of its events.
type handlerWork struct {
	name   string
	events int
	fn     func(context.Context, *ddd.DomainEvent) error
}

// sample is one measurement: events per second, and this process's CPU
// time per event (user and system, from getrusage): on a machine shared
// with other work the CPU time says more about what the instrumentation
// costs than the rate, which other processes slow down at random.
type sample struct {
	rate, cpu float64 // events/s, µs/event
}

// measured runs fn, which handles n events, and returns its sample,
// counted from when fn calls start to when it calls stop (without them,
// from its call to its return): a drain's set-up and shutdown are not
// the instrumentation's cost.
func measured(b *testing.B, n int, fn func(start, stop func())) sample {
	type mark struct {
		at  time.Time
		cpu time.Duration
	}
	now := func() mark {
		var u syscall.Rusage
		must(b, syscall.Getrusage(syscall.RUSAGE_SELF, &u))
		return mark{time.Now(), time.Duration(u.Utime.Nano() + u.Stime.Nano())}
	}
	var began, ended mark
	var once sync.Once
	began = now()
	fn(func() { began = now() }, func() { once.Do(func() { ended = now() }) })
	once.Do(func() { ended = now() })
	return sample{rate: float64(n) / ended.at.Sub(began.at).Seconds(), cpu: float64((ended.cpu - began.cpu).Microseconds()) / float64(n)}
}

// sides runs measure for every configuration in each round, in an order
// that rotates, and reports for each configuration the median over the
// rounds of its rate divided by off's in the same round (with the lowest
// and highest of those ratios: the noise), and the median of the CPU time
// it adds per event. Ratios within a round are taken seconds apart, so
// the machine's drift between rounds cancels out.
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
	var offRates, offCPUs []float64
	for _, s := range samples[0] {
		offRates, offCPUs = append(offRates, s.rate), append(offCPUs, s.cpu)
	}
	b.ReportMetric(median(offRates), "off-events/s")
	b.ReportMetric(median(offCPUs), "off-cpu-µs/event")
	summary := fmt.Sprintf("medians: off %.0f events/s, %.1f CPU-µs/event", median(offRates), median(offCPUs))
	for j, c := range configs[1:] {
		var ratios, extra []float64
		for round, s := range samples[j+1] {
			ratios = append(ratios, s.rate/offRates[round])
			extra = append(extra, s.cpu-offCPUs[round])
		}
		ratio := median(ratios)
		b.ReportMetric(ratio, c.name+"/off")
		b.ReportMetric(median(extra), c.name+"-extra-cpu-µs/event")
		summary += fmt.Sprintf("; %s/off %.3f (rounds %.2f-%.2f), CPU +%.1f µs/event",
			c.name, ratio, slices.Min(ratios), slices.Max(ratios), median(extra))
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
	n := min(*overheadEvents, 10000)
	return measured(b, n, func(_, _ func()) {
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

// backlog stores n events, sequenced, in c's tables, dispatched ten at a
// time by a producer with c's observer.
func backlog(b *testing.B, db *gorm.DB, c configuration, n int) {
	ctx := context.Background()
	bus := busFor(b, db, "backlog", c.obs, eventbus.WithTablePrefix(c.prefix))
	batch := make([]*ddd.DomainEvent, 0, 10)
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
		must(b, db.Raw("SELECT COUNT(*) FROM "+c.prefix+"events WHERE seq IS NULL").Scan(&left).Error)
		return left == 0
	})
	cancel()
	wg.Wait()
}

// drainRate drains the first w.events events of the backlog with a new
// service whose handler does w, and removes the service. The rate counts
// from the first handler call.
func drainRate(b *testing.B, db *gorm.DB, c configuration, round int, w handlerWork) sample {
	service := fmt.Sprintf("%s-%d-%s", w.name, round, strings.TrimSuffix(c.name, "%"))
	bus := busFor(b, db, service, c.obs, eventbus.WithTablePrefix(c.prefix))
	n := w.events
	return measured(b, n, func(started, stopped func()) {
		var handled atomic.Int64
		var first sync.Once
		done := make(chan struct{})
		must(b, bus.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
			first.Do(started)
			if err := w.fn(ctx, evt); err != nil {
				return err
			}
			if handled.Add(1) == int64(n) {
				stopped()
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
