package eventbus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/sqlite"
)

type OrderShipped struct {
	OrderID string `json:"order_id"`
}

// A service consuming events that another part of the application dispatches.
func ExampleNewEventBus() {
	dir, _ := os.MkdirTemp("", "eventbus-example")
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(filepath.Join(dir, "app.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := eventbus.NewEventBus("notifications", db,
		eventbus.WithLogger(quiet),
		eventbus.WithStartPosition(eventbus.StartFromEarliest))
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan struct{})
	router := ddd.NewRouter()
	_ = ddd.On(router, func(ctx context.Context, evt *ddd.DomainEvent, e OrderShipped) error {
		fmt.Println("notify customer:", e.OrderID, "from", evt.Sender)
		close(done)
		return nil
	})
	_ = bus.RegisterEventHandler(router.HandleEvent)

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { _ = bus.Start(ctx); close(stopped) }()

	evt, _ := ddd.NewDomainEvent("order-7", OrderShipped{OrderID: "order-7"})
	if err := bus.Dispatch(context.Background(), evt); err != nil {
		fmt.Println(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		fmt.Println("timed out")
	}
	cancel()
	<-stopped
	// Output: notify customer: order-7 from order-7
}

// Invalid settings are errors, not panics.
func ExampleWithCleanCron() {
	dir, _ := os.MkdirTemp("", "eventbus-example")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(filepath.Join(dir, "app.db"))
	_, err := eventbus.NewEventBus("svc", db, eventbus.WithCleanCron("*/5 * * * * *"))
	fmt.Println(err != nil)
	_, err = eventbus.NewEventBus("svc", db, eventbus.WithCleanCron("30 3 * * *")) // 03:30 every day
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}
