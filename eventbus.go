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
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
	"github.com/dddbus/eventbus/internal/store/sqlstore"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// EventBus stores and delivers the domain events of one consuming service.
// Several instances (processes) may run the same service: one at a time
// owns its consumption through a lease, the others stand by.
type EventBus struct {
	service string
	st      store.Store // every database operation (internal/store)
	opts    Config
	log     *slog.Logger
	owner   string // this instance's name in the lease

	mu        sync.Mutex
	handler   ddd.DomainEventHandler
	batch     BatchHandler // set with handler: batches go to it (batchhandler.go)
	txChecker ddd.DomainEventTxChecker
	running   atomic.Bool
	wake      chan struct{}
	dsn       string    // PostgreSQL: the DSN the wake-up listener connects with ("": none known)
	ann       announcer // coalesces NOTIFYs (wakeup.go)
	stats     counters
	obsPanic  atomic.Int64 // when a panicking observer was last logged (Unix ns)
	holds     holds        // senders of calls the bus stopped waiting for
	// handlerParent is the handler calls' parent context while Start runs
	// (see stopGrace); setAsideAfter, if set, replaces the constant of
	// that name (tests).
	handlerParent context.Context
	setAsideAfter time.Duration

	// Owned by the consume loop.
	lease         *lease
	registered    atomic.Bool // the service's row exists
	prefetched    *prefetch   // the next batch, read while this one ran
	lastSequenced time.Time   // last time a poll ran the sequencer
	lastTidied    time.Time   // last time a poll ran the sequencer's upkeep
	lastRetried   time.Time   // last time a poll ran the retry phase
	retryMore     bool        // the last retry phase had more to do
	standbyAt     time.Time   // last time this instance reported in as a standby
	removedLogged time.Time   // last time it said its service was removed
	removed       atomic.Bool // its service was removed while it ran (see standBy)

	// Partitions (partition.go), owned by the consume loop. While a
	// partitioned service is consumed, lease, prefetched, lastRetried and
	// retryMore above are those of cur, the partition being worked on.
	cur         *part
	parts       map[string]*part // by row name
	view        store.PartitionView
	viewAt      time.Time // when view was read (zero: never this Start)
	switchAsked bool      // this Start looked at the count already (see steerCount)
	turn        int       // rotates the order partitions are polled in

	// Background sequencing of a backlog (see numberInBackground).
	numberBusy atomic.Bool
	bg         routines // goroutines Start waits for (see routines)
}

var (
	_ ddd.EventBus   = (*EventBus)(nil)
	_ ddd.TxEventBus = (*EventBus)(nil)
	_ ddd.TXEventBus = (*EventBus)(nil)
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

// registerService creates the service's row, at the start position, unless
// it exists: one server-side step (see register_service in migration 0007,
// and the SQLite store). At the latest position its offset is the
// last number given once every event committed before the call is
// numbered, under the sequencer's lock: exactly the events committed after
// it are delivered.
func (b *EventBus) registerService(ctx context.Context) error {
	pos := int64(store.StartLatest)
	switch b.opts.StartPosition.kind {
	case startEarliest:
		pos = 0
	case startAfter:
		pos = b.opts.StartPosition.seq
	}
	ctx, cancel := b.bounded(ctx)
	defer cancel()
	return b.st.RegisterService(ctx, b.service, pos)
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

// Notify wakes the poller of every started bus of this process on the
// same database and table prefix (any service), and of b. On PostgreSQL it
// also sends the wake-up notification for other processes that a
// coalesced Dispatch left owing (see wakeup.go). Call it after committing
// a transaction in which you dispatched events yourself; the engine does
// it for you.
func (b *EventBus) Notify() {
	b.wakeProcess()
	b.announceOwed()
}

// committed is Notify after a transaction of the bus's own wrote or
// published events: it owes other processes a notification.
func (b *EventBus) committed() {
	b.wakeProcess()
	if b.announces() {
		b.ann.notified.Store(time.Now().UnixNano()) // a check pending in its stead must cover it too
		b.announceLater()
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
