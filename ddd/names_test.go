package ddd_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dddbus/eventbus/ddd"
	"gorm.io/driver/sqlite"
	"gorm.io/gorm"
)

type paid struct{ N int }

func (paid) EventType() string { return "test.Paid" }

// oldBus implements the deprecated TXEventBus only.
type oldBus struct{ dispatched, begun, committed int }

func (b *oldBus) Dispatch(context.Context, ...*ddd.DomainEvent) error { b.dispatched++; return nil }
func (b *oldBus) RegisterEventHandler(ddd.DomainEventHandler) error   { return nil }
func (b *oldBus) RegisterEventTXChecker(ddd.DomainEventTXChecker) error {
	return nil
}
func (b *oldBus) DispatchBegin(ctx context.Context, _ ...*ddd.DomainEvent) (context.Context, error) {
	b.begun++
	return ctx, nil
}
func (b *oldBus) Commit(context.Context) error   { b.committed++; return nil }
func (b *oldBus) Rollback(context.Context) error { return nil }

var _ ddd.TXEventBus = (*oldBus)(nil)

// The TX-spelled names keep working: the aliases are the same types and
// values, and the engine still sends transactional events through a bus
// written against TXEventBus.
func TestTXNamesStillWork(t *testing.T) {
	var s ddd.TXStatus = ddd.TxCommit
	if s != ddd.TXCommit || ddd.TXUnknown != ddd.TxUnknown || ddd.TXRollback != ddd.TxRollback || s.String() != "commit" {
		t.Fatalf("TXStatus aliases differ: %v", s)
	}
	var c ddd.DomainEventTxChecker = func(context.Context, []*ddd.DomainEvent) (ddd.TXStatus, error) { return ddd.TXUnknown, nil }
	var _ ddd.DomainEventTXChecker = c

	db, err := gorm.Open(sqlite.Open(filepath.Join(t.TempDir(), "names.db")), &gorm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	bus := &oldBus{}
	e, err := ddd.NewEngine(db, ddd.WithEventBus(bus))
	if err != nil {
		t.Fatal(err)
	}
	evt, err := ddd.NewDomainEvent("order-1", paid{1}, ddd.WithSendType(ddd.SendTransaction))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(t.Context(), func(_ context.Context, uow *ddd.UnitOfWork) error {
		uow.Raise(evt)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if bus.begun != 1 || bus.committed != 1 {
		t.Fatalf("begun %d committed %d, want 1 and 1", bus.begun, bus.committed)
	}
}
