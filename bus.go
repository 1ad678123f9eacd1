// The bus's shared state: the EventBus struct and the types of its fields
// that hold no logic of their own. It lies at the bottom of the root
// package's layers (docs/layout.md): every file with a method on the bus
// uses it, and it uses only the state types below it.

package eventbus

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
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
	batch     func(context.Context, []*ddd.DomainEvent) (int, error) // set with handler: batches go to it (batchhandler.go)
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

	// Background sequencing of a backlog (see sequenceInBackground).
	sequenceBusy atomic.Bool
	bg           routines // goroutines Start waits for (see routines)
}

var (
	_ ddd.EventBus   = (*EventBus)(nil)
	_ ddd.TxEventBus = (*EventBus)(nil)
	_ ddd.TXEventBus = (*EventBus)(nil)
)

type counters struct {
	handled, skipped, failed, parked, dead, sequenced atomic.Int64
	abandoned, setAside, unreturned                   atomic.Int64
}

// announcer coalesces a bus's NOTIFYs (PostgreSQL).
type announcer struct {
	issued   atomic.Int64 // when a transaction last carried a NOTIFY (Unix ns)
	lastSkip atomic.Int64 // when a transaction last skipped its NOTIFY
	notified atomic.Int64 // when Notify was last called
	sent     atomic.Int64 // when the last NOTIFY of its own was sent
	pending  atomic.Bool  // a check (checkOwed) is scheduled
}

// prefetch is a batch read ahead: the events after offset after.
type prefetch struct {
	after int64
	done  chan struct{}
	recs  []*record
	err   error
}

// part is one partition this instance holds or means to take.
type part struct {
	index, count int
	row          string

	// What the consume loop keeps per lease (see EventBus), while the
	// partition is not the one being worked on.
	lease       *lease
	prefetched  *prefetch
	lastRetried time.Time
	retryMore   bool
}
