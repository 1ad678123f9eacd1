// Package store is the bus's one seam to its database: an interface named
// by the operations the bus performs (insert events, number them, read a
// batch, commit an offset under a fence, ...), never by SQL fragments.
//
// Each implementation (one per database, see sqlstore) owns its statements,
// their arguments' order, how rows are scanned, table and column names and
// state codes, and its special paths. The bus above it decides when and
// why; the store decides how. The cut follows what must be atomic: every
// call that needs several statements in one transaction (an offset commit
// with its retry rows, a retry phase's outcomes under the fence, a half
// message's resolution and publication, a seek, a service's removal, a
// cleaning batch) is one operation, so no transaction crosses the seam
// except a caller's own (Conn), which the bus only passes through.
//
// Calls that take more than three values take a ...Params struct.
// Times are Unix milliseconds on the database clock; durations are
// milliseconds.
package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/dddbus/eventbus/ddd"
)

// Errors the operations return (wrapped). The bus exports ErrInvalidDB,
// ErrInvalidTransaction and ErrInvalidOption as its own; ErrLeaseLost stays
// inside the bus (its exported namesake is deprecated and never returned).
var (
	// ErrLeaseLost: a fenced write found another owner or epoch.
	ErrLeaseLost = errors.New("eventbus: lease lost")
	// ErrInvalidDB: the database is unsupported or misconfigured.
	ErrInvalidDB = errors.New("eventbus: invalid db")
	// ErrInvalidTransaction: a caller's transaction the store cannot write with.
	ErrInvalidTransaction = errors.New("eventbus: unusable transaction in context")
	// ErrInvalidOption: a setting does not fit the database.
	ErrInvalidOption = errors.New("eventbus: invalid option")
)

// Conn is the connection of a caller's open transaction (a *sql.Tx or
// GORM's ConnPool); nil where an operation takes one means "on its own".
type Conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Store is every operation of the bus on its database.
type Store interface {
	Events
	Sequencer
	Offsets
	Retries
	Services
	DeadLetters
	HalfMessages
	Cleaner
	Partitions
	Wakes
}

// Wakes is how buses learn of events committed by other processes sooner
// than their poll: PostgreSQL's LISTEN/NOTIFY (Announce, Listen), or a
// cheap read that changes when events are committed or sequenced
// (ChangeMark) where there is none.
type Wakes interface {
	// Identity names the database and the table prefix: stores with the
	// same identity see the same log (in one process they share wake-ups).
	Identity() string
	// Announces reports whether Announce and Listen do anything here
	// (PostgreSQL).
	Announces() bool
	// Announce tells every listener of the log that events were written,
	// by from (the announcing process, which its own listener ignores), on
	// on: delivered only if on's transaction commits (nil: at once, on a
	// connection of the pool). A no-op where Announces is false.
	Announce(ctx context.Context, on Conn, from string) error
	// Listen listens for announcements on a connection of its own, opened
	// from p.DSN, until ctx is done or the connection fails, and returns
	// then (the caller reconnects). It calls p.Listening once it listens
	// and p.Wake for each announcement not from p.Self.
	Listen(ctx context.Context, p ListenParams) error
	// ChangeMark returns a value that changes when events are committed
	// or sequenced: the highest event id and the last number given. One
	// index-only read.
	ChangeMark(ctx context.Context) (ChangeMark, error)
}

// Events writes and reads the log.
type Events interface {
	// CallerTx returns the connection of the transaction ctx carries, once
	// it is known usable and on the store's database; inCaller is false
	// when ctx carries none.
	CallerTx(ctx context.Context) (conn Conn, inCaller bool, err error)
	// EncodeEvent returns evt as the store writes it; an error wraps
	// ddd.ErrInvalidEvent when it cannot be stored (metadata, row size).
	EncodeEvent(evt *ddd.DomainEvent) (EncodedEvent, error)
	// InsertEvents appends events to the log, on on (nil: in a transaction
	// of its own).
	InsertEvents(ctx context.Context, on Conn, events []EncodedEvent) error
	// FetchEvents reads up to limit sequenced events after offset, in seq order.
	FetchEvents(ctx context.Context, after int64, limit int) ([]Record, error)
}

// Sequencer numbers committed events: gap-free, increasing seq.
type Sequencer interface {
	// RegisterService creates a service's row unless it exists, its offset
	// at start (StartLatest: the last number once every event committed
	// before the call is sequenced).
	RegisterService(ctx context.Context, service string, start int64) error
	// Sequence runs one sequencer step: sequences up to a batch of committed,
	// unsequenced events; more reports whether others wait.
	Sequence(ctx context.Context) (n int, more bool, err error)
	// TidyRuns is the sequencer's upkeep (where it keeps runs); changed
	// reports whether it changed them.
	TidyRuns(ctx context.Context, p TidyParams) (changed bool, err error)
}

// Offsets holds each service's offset and lease.
type Offsets interface {
	// AcquireLease takes the service's lease if it is free, lapsed or
	// this owner's; ok is false when a live instance holds it.
	AcquireLease(ctx context.Context, p LeaseParams) (l Lease, ok bool, err error)
	// RenewLease extends the lease of owner at epoch; ErrLeaseLost if it
	// changed hands.
	RenewLease(ctx context.Context, p LeaseParams) error
	// ReleaseLease hands the service over at once (by owner alone).
	ReleaseLease(ctx context.Context, service, owner string) error
	// CommitOffset moves the offset and stores new retry rows, in one
	// transaction fenced by owner and epoch; ErrLeaseLost if fenced out.
	CommitOffset(ctx context.Context, p CommitOffsetParams) error
	// ReportStandby records a running instance that does not hold the
	// lease; exists is false when the service's row is gone.
	ReportStandby(ctx context.Context, service string, leaseMillis int64) (exists bool, err error)
}

// Retries holds the retry store: waiting retries and parked FIFO events.
type Retries interface {
	// BlockedSenders returns those of senders with a FIFO event waiting.
	BlockedSenders(ctx context.Context, service string, senders []string) ([]string, error)
	// DueRetries reads due retries in seq order (a FIFO row only at its
	// sender's head), leaving out the rows of p.Exclude's senders.
	DueRetries(ctx context.Context, p DueRetriesParams) ([]Retry, error)
	// RecordRetries stores a retry phase's outcomes in one transaction
	// fenced (and the lease extended) as RenewLease; ErrLeaseLost if fenced out.
	RecordRetries(ctx context.Context, p RecordRetriesParams) error
}

// Services reports on, removes and moves services.
type Services interface {
	ServiceStatuses(ctx context.Context) ([]ServiceRow, error)
	// RemoveService deletes an idle service with its retries; see RemoveOutcome.
	RemoveService(ctx context.Context, name string) (RemoveOutcome, error)
	// FirstSeqFrom returns the lowest seq of an event stored at or after
	// atMillis; ok false if none.
	FirstSeqFrom(ctx context.Context, atMillis int64) (seq int64, ok bool, err error)
	// Seek fences the service's owner out and moves its offset to what
	// p.Target returns, dropping waiting retries past it, in one
	// transaction; found false for an unknown service.
	Seek(ctx context.Context, p SeekParams) (out SeekOutcome, found bool, err error)
	// Offsets returns every service's offset and the database clock.
	Offsets(ctx context.Context) (offsets []Offset, now int64, err error)
	// FirstCreatedAfter returns when the first event after seq was stored.
	FirstCreatedAfter(ctx context.Context, seq int64) (at int64, ok bool, err error)
	// OldestUnsequencedCreated returns when the oldest unsequenced event was stored.
	OldestUnsequencedCreated(ctx context.Context) (at int64, ok bool, err error)
}

// DeadLetters lists, counts, replays and discards dead letters.
type DeadLetters interface {
	ListDeadLetters(ctx context.Context, p DeadLetterQuery) ([]DeadLetter, error)
	CountDeadLetters(ctx context.Context, service string) (int64, error)
	// ReplayDeadLetters schedules the service's dead letters of these
	// exact event IDs again, with a fresh budget; n counts those found.
	ReplayDeadLetters(ctx context.Context, service string, eventIDs []string) (n int, err error)
	// DiscardDeadLetters deletes them.
	DiscardDeadLetters(ctx context.Context, service string, eventIDs []string) (n int, err error)
	// ReplayDeadLettersWhere and DiscardDeadLettersWhere do the same to
	// every match of f, in batches, each its own transaction.
	ReplayDeadLettersWhere(ctx context.Context, service string, f DeadLetterFilter) (int, error)
	DiscardDeadLettersWhere(ctx context.Context, service string, f DeadLetterFilter) (int, error)
}

// HalfMessages stores pending transactions and resolves them.
type HalfMessages interface {
	// BeginTx stores a pending transaction with its events, on on (nil: in
	// a transaction of its own), and returns its id.
	BeginTx(ctx context.Context, on Conn, p BeginTxParams) (int64, error)
	// ResolveTx moves a pending or unresolved transaction to p.State,
	// publishing its events on commit; see ResolveOutcome.
	ResolveTx(ctx context.Context, p ResolveTxParams) (ResolveOutcome, error)
	// DueTxs lists the service's pending transactions due for a check.
	DueTxs(ctx context.Context, service string, limit int) ([]DueTx, error)
	// ClaimTx claims a due transaction seen with checks checks for
	// claimMillis; false if resolved or claimed meanwhile.
	ClaimTx(ctx context.Context, id int64, checks int, claimMillis int64) (bool, error)
	// RescheduleTx records a check that resolved nothing, while its claim
	// holds; false if it does not.
	RescheduleTx(ctx context.Context, p RescheduleTxParams) (bool, error)
	// TxEvents returns a pending transaction's events, in order.
	TxEvents(ctx context.Context, id int64) ([]*ddd.DomainEvent, error)
	// ListTxs pages a service's transactions in some states, in id order.
	ListTxs(ctx context.Context, p TxListParams) ([]TxRow, error)
	CountUnresolvedTxs(ctx context.Context, service string) (int64, error)
	// TxCounts counts a service's pending and unresolved transactions.
	TxCounts(ctx context.Context, service string) (pending, unresolved int64, err error)
	// Tx returns transaction id; found false if it is not stored.
	Tx(ctx context.Context, id int64) (t TxRow, found bool, err error)
	// TxWatermark is the highest transaction id the cleaner removed.
	TxWatermark(ctx context.Context) (int64, error)
	// NextTxService returns the lowest service name above after that has
	// transactions; ok false if none.
	NextTxService(ctx context.Context, after string) (name string, ok bool, err error)
}

// Partitions shares a service's partitions among its running instances
// (see migration 0009): each partition is a row with its own offset, lease
// and epoch, which the Offsets operations take by its name (PartitionRow).
type Partitions interface {
	// ReportMember records a running instance (and, with p.Standby, its
	// standby presence) and reads the service's partitions and live instances.
	ReportMember(ctx context.Context, p MemberParams) (PartitionView, error)
	// LeaveMember removes an instance from the live ones at once.
	LeaveMember(ctx context.Context, service, instance string) error
	// RequestSwitch asks for a new partition count, effective once every
	// partition has consumed what is sequenced now; false if one is pending
	// or the count is already to.
	RequestSwitch(ctx context.Context, service string, to int) (bool, error)
	// RaiseSwitch moves a pending change's switch point up to seq (a
	// partition went past it before its owner saw the request).
	RaiseSwitch(ctx context.Context, service string, to int, seq int64) error
	// SwitchPartitions replaces p.From's rows, all at offset p.At and free,
	// by p.To rows at p.At; false if they are not (nothing changes).
	SwitchPartitions(ctx context.Context, p SwitchParams) (bool, error)
}

// Cleaner deletes what retention lets go, in batches.
type Cleaner interface {
	CleanDeadLetters(ctx context.Context, ageMillis int64) (int64, error)
	CleanEvents(ctx context.Context, retentionMillis int64) (int64, error)
	CleanTxs(ctx context.Context, retentionMillis int64) (int64, error)
}
