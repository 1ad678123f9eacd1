// Command example runs an order service on an embedded SQLite file,
// instrumented with eventbusotel: traces from the command that places an
// order through the bus into the billing handler, and metrics served on a
// Prometheus endpoint. Billing consumes (its first attempt at order-2
// fails and is retried); shipping is registered but stopped, so its lag
// grows.
//
//	cd contrib/otel && go run ./example            # places orders, prints a summary
//	cd contrib/otel && go run ./example -spans     # and the spans recorded (in-memory exporter)
//	cd contrib/otel && go run ./example -serve     # then serves http://127.0.0.1:9464/metrics until interrupted
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dddbus/eventbus"
	eventbusotel "github.com/dddbus/eventbus/contrib/otel"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/sqlite"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// OrderPlaced is the event the order aggregate raises.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

// EventType names the event independently of the Go package.
func (OrderPlaced) EventType() string { return "orders.OrderPlaced" }

// Order is the aggregate.
type Order struct {
	ddd.Events `gorm:"-"`
	ID         string `gorm:"primaryKey;size:64"`
	Amount     int
}

type config struct {
	listen  string        // address of the metrics endpoint
	orders  int           // orders to place
	spans   bool          // print the spans at the end
	serve   bool          // keep serving metrics until ctx ends
	refresh time.Duration // how often the store's gauges are read at most
	ready   func(addr string)
}

func main() {
	cfg := config{}
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:9464", "address of the Prometheus endpoint (/metrics)")
	flag.IntVar(&cfg.orders, "orders", 3, "orders to place")
	flag.BoolVar(&cfg.spans, "spans", false, "print the spans recorded")
	flag.BoolVar(&cfg.serve, "serve", false, "keep serving /metrics until interrupted")
	flag.DurationVar(&cfg.refresh, "refresh", 5*time.Second, "read the store's gauges at most this often")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "example failed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	dir, err := os.MkdirTemp("", "eventbus-otel-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(filepath.Join(dir, "shop.db"))
	if err != nil {
		return err
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	if err := db.AutoMigrate(&Order{}); err != nil {
		return err
	}

	// Metrics: an OpenTelemetry meter provider read by a Prometheus
	// exporter, on a registry of its own, served over HTTP.
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())
	// Traces: kept in memory, printed with -spans.
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())

	inst, err := eventbusotel.New(eventbusotel.WithTracerProvider(tp), eventbusotel.WithMeterProvider(mp))
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := func(extra ...eventbus.Option) []eventbus.Option {
		return append([]eventbus.Option{eventbus.WithObserver(inst), eventbus.WithLogger(logger), eventbus.WithCleanCron(""),
			eventbus.WithRunInterval(50 * time.Millisecond), eventbus.WithStartPosition(eventbus.StartFromEarliest)}, extra...)
	}
	orders, err := eventbus.NewEventBus("orders", db, opts()...)
	if err != nil {
		return err
	}
	billing, err := eventbus.NewEventBus("billing", db, opts(eventbus.WithRetryStrategy(&eventbus.LimitRetry{Limit: 3}))...)
	if err != nil {
		return err
	}
	shipping, err := eventbus.NewEventBus("shipping", db, opts()...)
	if err != nil {
		return err
	}
	reg, err := inst.ObserveStore(orders, eventbusotel.WithRefreshInterval(cfg.refresh))
	if err != nil {
		return err
	}
	defer reg.Unregister()

	var mu sync.Mutex
	billed := map[string]int{} // order -> attempts
	err = billing.RegisterEventHandler(func(ctx context.Context, evt *ddd.DomainEvent) error {
		var o OrderPlaced
		if err := evt.Decode(&o); err != nil {
			return ddd.Permanent(err)
		}
		// The handler's ctx carries the consumer span: its own work joins the trace.
		_, span := tp.Tracer("billing").Start(ctx, "charge card")
		defer span.End()
		mu.Lock()
		defer mu.Unlock()
		billed[o.OrderID]++
		if o.OrderID == "order-2" && billed[o.OrderID] == 1 {
			return errors.New("payment provider timed out")
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Shipping registers (its offset starts now) but is never started.
	if err := shipping.RegisterEventHandler(func(context.Context, *ddd.DomainEvent) error { return nil }); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(registry, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = billing.Start(runCtx) })
	defer func() { cancel(); wg.Wait() }()

	engine, err := ddd.NewEngine(db, orders.Options()...)
	if err != nil {
		return err
	}
	tracer := tp.Tracer("shop")
	for i := 1; i <= cfg.orders; i++ {
		id := fmt.Sprintf("order-%d", i)
		cctx, span := tracer.Start(ctx, "place order")
		err := engine.Run(cctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
			o := &Order{ID: id, Amount: 100 * i}
			uow.Track(o)
			if err := o.Raise(o.ID, OrderPlaced{OrderID: o.ID, Amount: o.Amount}); err != nil {
				return err
			}
			return uow.Tx().Create(o).Error
		})
		span.End()
		if err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(billed)
		mu.Unlock()
		if n == cfg.orders && billing.Stats().Handled >= int64(cfg.orders) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("billing handled %d of %d orders in 30s", n, cfg.orders)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintf(out, "placed %d orders; billing handled them (%d failed attempt retried); shipping is stopped\n", cfg.orders, billing.Stats().Failed)
	fmt.Fprintf(out, "metrics: http://%s/metrics\n", ln.Addr())
	if cfg.spans {
		printSpans(out, spans.GetSpans())
	}
	if cfg.ready != nil {
		cfg.ready(ln.Addr().String())
	}
	if cfg.serve {
		<-ctx.Done()
	}
	return nil
}

// printSpans lists spans grouped by trace, children indented under their
// parents, with the attributes that tell where an event went.
func printSpans(out io.Writer, spans tracetest.SpanStubs) {
	byParent := map[trace.SpanID][]tracetest.SpanStub{}
	known := map[trace.SpanID]bool{}
	for _, s := range spans {
		known[s.SpanContext.SpanID()] = true
	}
	var roots []tracetest.SpanStub
	for _, s := range spans {
		if p := s.Parent.SpanID(); s.Parent.IsValid() && known[p] {
			byParent[p] = append(byParent[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	sort.SliceStable(roots, func(i, j int) bool { return roots[i].StartTime.Before(roots[j].StartTime) })
	var show func(s tracetest.SpanStub, depth int)
	show = func(s tracetest.SpanStub, depth int) {
		var attrs []string
		for _, kv := range s.Attributes {
			switch kv.Key {
			case "messaging.system", "messaging.operation.type":
				continue
			}
			attrs = append(attrs, fmt.Sprintf("%s=%s", kv.Key, kv.Value.Emit()))
		}
		status := ""
		if s.Status.Code.String() == "Error" {
			status = " ERROR(" + s.Status.Description + ")"
		}
		links := ""
		if len(s.Links) > 0 {
			links = fmt.Sprintf(" links=[%s]", s.Links[0].SpanContext.SpanID())
		}
		fmt.Fprintf(out, "%s%s [%s] span=%s%s%s %s\n", strings.Repeat("  ", depth), s.Name, strings.ToLower(s.SpanKind.String()),
			s.SpanContext.SpanID(), links, status, strings.Join(attrs, " "))
		children := byParent[s.SpanContext.SpanID()]
		sort.SliceStable(children, func(i, j int) bool { return children[i].StartTime.Before(children[j].StartTime) })
		for _, c := range children {
			show(c, depth+1)
		}
	}
	for _, r := range roots {
		fmt.Fprintf(out, "trace %s\n", r.SpanContext.TraceID())
		show(r, 1)
	}
}
