// Command tour is the README's short tour as a program: an orders service
// places an order through the unit-of-work engine, and a billing service
// handles the event the order raised. README.md quotes this file whole; a
// test checks that it does and runs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/dddbus/eventbus"
	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/sqlite"
)

// OrderPlaced is the domain event. Its name is stored with every event, so
// it must not change; EventType fixes it whatever the Go package is called.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

func (OrderPlaced) EventType() string { return "orders.OrderPlaced" }

// Order is the aggregate; ddd.Events buffers the events it raises.
type Order struct {
	ddd.Events `gorm:"-"`
	ID         string `gorm:"primaryKey;size:64"`
	Amount     int
}

func (o *Order) Place(amount int) error {
	if amount <= 0 {
		return errors.New("amount must be positive")
	}
	o.Amount = amount
	return o.Raise(o.ID, OrderPlaced{OrderID: o.ID, Amount: amount})
}

func main() {
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	db, err := sqlite.Open("shop.db") // or gorm.Open(mysql.Open(dsn)) / postgres
	if err != nil {
		return err
	}
	if err := db.AutoMigrate(&Order{}); err != nil { // the business table
		return err
	}

	// A consuming service (bounded context) with its own offset: it
	// registers with its handler, and receives what is committed after.
	billing, err := eventbus.NewEventBus("billing", db,
		eventbus.WithRetryStrategy(&eventbus.IntervalRetry{Limit: 3, Interval: time.Second}))
	if err != nil {
		return err
	}
	invoiced := make(chan string, 1)
	router := ddd.NewRouter()
	err = ddd.On(router, func(ctx context.Context, evt *ddd.DomainEvent, e OrderPlaced) error {
		// Delivery is at-least-once: evt.ID is the idempotency key.
		fmt.Printf("billing: invoice %s for %s, amount %d\n", evt.ID, e.OrderID, e.Amount)
		select {
		case invoiced <- e.OrderID:
		default:
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := billing.RegisterEventHandler(router.HandleEvent); err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	stopped := make(chan error, 1)
	go func() { stopped <- billing.Start(ctx) }() // until ctx is cancelled

	// The producing service: the engine runs each command in one
	// transaction and dispatches the events its aggregates raised in it.
	orders, err := eventbus.NewEventBus("orders", db)
	if err != nil {
		return err
	}
	engine, err := ddd.NewEngine(db, orders.Options()...)
	if err != nil {
		return err
	}
	id := "order-" + ddd.NewEventID()
	err = engine.Run(ctx, func(ctx context.Context, uow *ddd.UnitOfWork) error {
		o := &Order{ID: id}
		if err := o.Place(120); err != nil {
			return err
		}
		uow.Track(o) // its events are collected when the command returns
		return uow.Tx().Create(o).Error
	})
	if err != nil {
		return err
	}

	select {
	case <-invoiced:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s was not invoiced within 10s", id)
	}
	stop()
	return <-stopped // after handlers in flight, or ShutdownGrace
}
