// Command example relays the events of an order service on an embedded
// SQLite file to NATS JetStream, and consumes them there with a billing
// handler written for the bus (a ddd.Router): the same code either side.
// Billing fails once on the first order and JetStream delivers it again.
//
//	cd relay && go run ./example [-nats nats://127.0.0.1:4222] [-orders 5]
//
// It needs a running nats-server with JetStream (-js). It creates a stream
// of its own and deletes it before it exits.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/relay"
	"github.com/dddbus/eventbus/sqlite"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// OrderPlaced is the domain event the order aggregate raises.
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

func main() {
	url := os.Getenv("EVENTBUS_NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	flag.StringVar(&url, "nats", url, "NATS server URL (default $EVENTBUS_NATS_URL, else "+nats.DefaultURL+")")
	orders := flag.Int("orders", 5, "orders to place")
	flag.Parse()
	if err := run(os.Stdout, url, *orders); err != nil {
		fmt.Fprintln(os.Stderr, "example failed:", err)
		os.Exit(1)
	}
}

func run(out io.Writer, url string, orders int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	dir, err := os.MkdirTemp("", "eventbus-relay-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(filepath.Join(dir, "shop.db"))
	if err != nil {
		return err
	}
	if err := db.AutoMigrate(&Order{}); err != nil {
		return err
	}

	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to %s (is nats-server -js running?): %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// A stream of this run's own; a real deployment creates it once.
	var id [4]byte
	_, _ = rand.Read(id[:])
	stream, prefix := "EXAMPLE_"+hex.EncodeToString(id[:]), "example"+hex.EncodeToString(id[:])
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"}}); err != nil {
		return fmt.Errorf("create stream: %w", err)
	}
	defer func() {
		_ = js.DeleteStream(context.Background(), stream)
		_ = js.DeleteStream(context.Background(), stream+"_DEAD")
	}()
	fmt.Fprintf(out, "stream %s captures %s.>\n", stream, prefix)

	// The relay: a service of the bus that publishes every event.
	r, err := relay.New(db, js, relay.WithSubjectFunc(relay.SubjectFromType(prefix)), relay.WithLogger(quiet))
	if err != nil {
		return err
	}
	// Producing through the relay's bus wakes the relay at each commit.
	engine, err := ddd.NewEngine(db, r.Bus().Options()...)
	if err != nil {
		return err
	}

	// Billing, on NATS now, with the handler it had on the bus.
	var mu sync.Mutex
	billed := map[string]bool{}
	allBilled := make(chan struct{})
	failedOnce := false
	router := ddd.NewRouter()
	err = ddd.On(router, func(ctx context.Context, evt *ddd.DomainEvent, e OrderPlaced) error {
		mu.Lock()
		defer mu.Unlock()
		if e.OrderID == "order-1" && !failedOnce {
			failedOnce = true
			fmt.Fprintf(out, "billing: %s failed once (the payment service is down); JetStream will deliver it again\n", e.OrderID)
			return errors.New("payment service unavailable")
		}
		if !billed[evt.ID] {
			billed[evt.ID] = true
			fmt.Fprintf(out, "billing: invoiced %s for %d (trace %s)\n", e.OrderID, e.Amount, evt.Metadata["traceparent"])
			if len(billed) == orders {
				close(allBilled)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	sub, err := relay.NewSubscriber(js, stream, "billing", router.HandleEvent, relay.WithSubscriberLogger(quiet),
		relay.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 3, Interval: 200 * time.Millisecond}))
	if err != nil {
		return err
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { errs <- r.Run(runCtx) })
	wg.Go(func() { errs <- sub.Run(runCtx) })

	for i := 1; i <= orders; i++ {
		err := engine.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
			o := &Order{ID: fmt.Sprintf("order-%d", i), Amount: 100 * i}
			evt, err := ddd.NewDomainEvent(o.ID, OrderPlaced{OrderID: o.ID, Amount: o.Amount},
				ddd.WithMetadata("traceparent", fmt.Sprintf("00-%032x-%016x-01", i, i)))
			if err != nil {
				return err
			}
			uow.Raise(evt)
			return uow.Tx().Create(o).Error
		})
		if err != nil {
			stop()
			return err
		}
		fmt.Fprintf(out, "orders: placed order-%d\n", i)
	}

	select {
	case <-allBilled:
	case <-ctx.Done():
		stop()
		return fmt.Errorf("not every order was billed within a minute")
	}
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	st := r.Stats()
	info, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "relay: %d events published, %d duplicates dropped; the stream holds %d messages\n",
		st.Published, st.Duplicates, info.CachedInfo().State.Msgs)
	ss := sub.Stats()
	fmt.Fprintf(out, "billing: %d handled, %d failed attempt(s), %d dead letters\n", ss.Handled, ss.Failed, ss.DeadLetters)
	return nil
}
