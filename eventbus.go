// Package eventbus is a DDD domain-event bus on a relational database: a
// transactional outbox that stores each event in the aggregate's own
// transaction, and a consumer that delivers the log to every service from
// that service's own offset.
//
// Guarantees, in short (README.md has the details):
//   - An event is stored if and only if the transaction that dispatched it commits.
//   - Every stored event reaches every service at least once; use
//     DomainEvent.ID as the idempotency key.
//   - One sender's events are handled one at a time, in log order; events of
//     different senders run concurrently.
//   - No committed event is skipped, however transactions interleave (see
//     the sequencer in sequencer.go).
package eventbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store/sqlstore"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// NewEventBus returns the bus of service serviceName on db (SQLite, MySQL or
// PostgreSQL through GORM). It validates the name and the options, checks
// the connection, runs the embedded migrations (with AutoMigrate off, it
// checks instead that they were applied: ErrSchemaVersion names the
// version found and the one needed), and on MySQL checks MaxPayloadBytes
// against the server's max_allowed_packet.
//
// The service registers (and its offset starts at Config.StartPosition)
// when a handler is registered: a bus without one only produces and holds
// nothing back.
func NewEventBus(serviceName string, db *gorm.DB, opts ...Option) (*EventBus, error) {
	if err := validateServiceName(serviceName); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, fmt.Errorf("%w: nil db", ErrInvalidDB)
	}
	o := DefaultConfig()
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: nil option", ErrInvalidOption)
		}
		opt(&o)
	}
	o.settle()
	if err := o.validate(); err != nil {
		return nil, err
	}
	name, err := dialectName(db)
	if err != nil {
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDB, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := sqlstore.New(ctx, sqlDB, name, o.TablePrefix)
	if err != nil {
		return nil, err
	}
	if o.AutoMigrate {
		if err := Migrate(ctx, db, o.TablePrefix); err != nil {
			return nil, err
		}
	} else if err := checkSchema(ctx, sqlDB, name, o.TablePrefix); err != nil {
		return nil, err
	}
	if err := st.Init(ctx, o.MaxPayloadBytes); err != nil {
		return nil, err
	}
	if o.InstanceID == "" {
		o.InstanceID = instanceName()
	}
	b := &EventBus{
		service: serviceName,
		st:      st,
		opts:    o,
		log:     o.Logger.With("service", serviceName),
		owner:   o.InstanceID,
		wake:    make(chan struct{}, 1),
		dsn:     postgresDSN(db),
	}
	if name == "postgres" && o.ListenNotify && b.dsn == "" {
		b.log.Info("eventbus: no DSN in the gorm dialector (opened from an existing connection): wake-ups from other processes use the change probe instead of LISTEN/NOTIFY")
	}
	return b, nil
}

// instanceName identifies this bus instance in leases and logs.
func instanceName() string {
	host, _ := os.Hostname()
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(r[:]))
	if len(name) > 64 {
		name = name[len(name)-64:]
	}
	return name
}

// Service returns the service name.
func (b *EventBus) Service() string { return b.service }

// RegisterEventHandler sets the handler called for every event this service
// consumes (typically ddd.Router.HandleEvent), and registers the service, so
// that its offset starts at Config.StartPosition as of this call. It may be
// set once, before Start.
func (b *EventBus) RegisterEventHandler(h ddd.DomainEventHandler) error {
	if h == nil {
		return fmt.Errorf("%w: nil event handler", ErrInvalidHandler)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.handler != nil {
		return ErrHandlerRegistered
	}
	// The service registers now, so that its start position is taken here
	// and the cleaner keeps what it will consume from now on. If the
	// database is unreachable, the consume loop registers it later.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.registerService(ctx); err != nil {
		b.log.Warn("eventbus: register service; will retry when consuming", "err", err)
	} else {
		b.registered.Store(true)
	}
	b.handler = h
	return nil
}

// Options returns the engine options that plug the bus in: the bus itself,
// and a post-commit hook that calls Notify, so that events committed by
// this process are handled at once by every started bus of the process on
// the database rather than at their next poll.
func (b *EventBus) Options() []ddd.Option {
	return []ddd.Option{
		ddd.WithEventBus(b),
		ddd.WithPostCommitHook(func(context.Context) { b.Notify() }),
	}
}

// postgresDSN returns the DSN of a gorm PostgreSQL dialector ("" if it was
// opened from an existing connection, or on other databases).
func postgresDSN(db *gorm.DB) string {
	if d, ok := db.Dialector.(*postgres.Dialector); ok && d.Config != nil {
		return d.Config.DSN
	}
	return ""
}
