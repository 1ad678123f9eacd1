// Command example runs an order service on an embedded SQLite file: orders
// are placed through the unit-of-work engine, and two bounded contexts
// (billing and shipping, each a consuming service with its own offset)
// handle OrderPlaced. Shipping fails once on the first order and is retried.
//
//	go run ./example
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/sqlite"
	"gorm.io/gorm"
)

// OrderPlaced is the domain event the order aggregate raises.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

// EventType names the event independently of the Go package.
func (OrderPlaced) EventType() string { return "orders.OrderPlaced" }

// Order is the aggregate; Events buffers what it raises until the engine
// stores it in the same transaction.
type Order struct {
	ddd.Events `gorm:"-"`
	ID         string `gorm:"primaryKey;size:64"`
	Amount     int
}

// Place changes the aggregate and raises the event.
func (o *Order) Place(amount int) error {
	if amount <= 0 {
		return fmt.Errorf("order %s: amount must be positive", o.ID)
	}
	o.Amount = amount
	return o.Raise(o.ID, OrderPlaced{OrderID: o.ID, Amount: amount})
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "example failed:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	dir, err := os.MkdirTemp("", "eventbus-example-")
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
	fmt.Fprintln(out, "database:", filepath.Join(dir, "shop.db"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := runOrders(ctx, db, out); err != nil {
		return err
	}
	return runTransactionalDemo(ctx, db, out)
}

func runOrders(ctx context.Context, db *gorm.DB, out io.Writer) error {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := []eventbus.Option{
		eventbus.WithRunInterval(50 * time.Millisecond),
		eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 3, Interval: 200 * time.Millisecond}),
		eventbus.WithStartPosition(eventbus.StartFromEarliest),
		eventbus.WithLogger(quiet),
	}
	// The order service produces events; the engine dispatches them in the
	// command's own transaction.
	orders, err := eventbus.NewEventBus("orders", db, opts...)
	if err != nil {
		return err
	}
	if err := db.AutoMigrate(&Order{}); err != nil {
		return err
	}
	engine, err := ddd.NewEngine(db, orders.Options()...)
	if err != nil {
		return err
	}

	var mu sync.Mutex
	handled := map[string]int{} // "context/order" -> calls
	log := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}

	// Two bounded contexts, each a service with its own offset.
	billing, err := eventbus.NewEventBus("billing", db, opts...)
	if err != nil {
		return err
	}
	billingRouter := ddd.NewRouter()
	if err := ddd.On(billingRouter, func(ctx context.Context, evt *ddd.DomainEvent, e OrderPlaced) error {
		mu.Lock()
		handled["billing/"+e.OrderID]++
		mu.Unlock()
		log("billing:  invoice for %s, amount %d (event %s)", e.OrderID, e.Amount, evt.ID)
		return nil
	}); err != nil {
		return err
	}
	if err := billing.RegisterEventHandler(billingRouter.HandleEvent); err != nil {
		return err
	}

	shipping, err := eventbus.NewEventBus("shipping", db, opts...)
	if err != nil {
		return err
	}
	shippingRouter := ddd.NewRouter()
	if err := ddd.On(shippingRouter, func(ctx context.Context, evt *ddd.DomainEvent, e OrderPlaced) error {
		mu.Lock()
		handled["shipping/"+e.OrderID]++
		calls := handled["shipping/"+e.OrderID]
		mu.Unlock()
		if e.OrderID == "order-1" && calls == 1 {
			log("shipping: carrier unavailable for %s, will be retried", e.OrderID)
			return errors.New("carrier unavailable")
		}
		log("shipping: parcel booked for %s (attempt %d)", e.OrderID, calls)
		return nil
	}); err != nil {
		return err
	}
	if err := shipping.RegisterEventHandler(shippingRouter.HandleEvent); err != nil {
		return err
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, b := range []*eventbus.EventBus{billing, shipping} {
		wg.Go(func() {
			if err := b.Start(runCtx); err != nil {
				log("%s stopped: %v", b.Service(), err)
			}
		})
	}
	defer func() { stop(); wg.Wait() }()

	// Place three orders; the third command fails after raising its event,
	// so its transaction rolls back and nobody ever sees that event.
	for i, amount := range []int{120, 80, -5} {
		id := fmt.Sprintf("order-%d", i+1)
		err := engine.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
			o := &Order{ID: id}
			uow.Track(o)
			if err := uow.Tx().Create(o).Error; err != nil {
				return err
			}
			return o.Place(amount)
		})
		if err != nil {
			log("orders:   %s rejected and rolled back: %v", id, err)
			continue
		}
		log("orders:   %s placed", id)
	}

	// Wait until both contexts have handled both committed orders.
	want := map[string]int{"billing/order-1": 1, "billing/order-2": 1, "shipping/order-1": 2, "shipping/order-2": 1}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		done := len(handled) == len(want)
		for k, v := range want {
			done = done && handled[k] == v
		}
		snapshot := fmt.Sprint(handled)
		mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out; handled so far: %s", snapshot)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stats := shipping.Stats()
	log("done: billing handled %d, shipping handled %d after %d failure(s)", billing.Stats().Handled, stats.Handled, stats.Failed)
	return nil
}
