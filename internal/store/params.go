package store

import "github.com/dddbus/eventbus/ddd"

// StartLatest, as RegisterService's start, puts the offset after every
// event committed before the call.
const StartLatest = -1

// TxState is a half message's state.
type TxState int8

const (
	TxPending    TxState = 0
	TxCommitted  TxState = 1
	TxRolledBack TxState = 2
	TxUnresolved TxState = 3 // the checker gave up (or none is registered)
)

// EncodedEvent is an event in the form a store writes it; Bytes is the
// size of its values (for the bus's own accounting).
type EncodedEvent struct {
	Values []any
	Bytes  int
}

// Record is one event as read from the log: its row id (insert order),
// its seq (delivery order) and the event.
type Record struct {
	PK    int64
	Seq   int64
	Event *ddd.DomainEvent
}

// Retry is a due retry: the record and the attempts made so far.
type Retry struct {
	Record
	Attempts int
}

// TidyParams are the sequencer upkeep's margins, in seconds; Sweep < 0
// skips the sweep.
type TidyParams struct {
	Settle, Expire, Sweep int64
}

// LeaseParams name a lease: the service, its owner, the epoch held
// (RenewLease) and how long it lasts from now.
type LeaseParams struct {
	Service     string
	Row         string // the lease's row: a partition's (PartitionRow); "" is Service's
	Owner       string
	Epoch       int64
	LeaseMillis int64
}

// LeaseRow is the name of the row the lease is on.
func (p LeaseParams) LeaseRow() string {
	if p.Row != "" {
		return p.Row
	}
	return p.Service
}

// Lease is a lease just taken: its epoch and the stored offset.
type Lease struct {
	Epoch  int64
	Offset int64
}

// CommitOffsetParams move a service's offset under its lease (which it
// extends), with the batch's new retry rows.
type CommitOffsetParams struct {
	LeaseParams
	Offset  int64
	Retries []NewRetry
}

// NewRetry is a retry row to store: a failed event (Dead: a dead letter
// at once), or one parked behind its sender's FIFO head (Attempts 0).
type NewRetry struct {
	Record
	Dead       bool
	Attempts   int
	DelayMilli int64
	LastError  string
}

// DueRetriesParams select due retries.
type DueRetriesParams struct {
	Service string
	Exclude []string // senders left out
	Limit   int
	// Of Partitions > 1, only the rows of Partition (slot % Partitions).
	Partitions, Partition int
}

// RecordRetriesParams are a retry phase's outcomes, under the lease of
// LeaseParams: Failed rows get a new attempt (or die), Done rows go.
type RecordRetriesParams struct {
	LeaseParams
	Failed []RetryOutcome
	Done   []int64 // event row ids
}

// RetryOutcome is a failed attempt of a retry row.
type RetryOutcome struct {
	PK         int64
	Dead       bool
	Attempts   int
	DelayMilli int64
	LastError  string
}

// ServiceRow is a service's stored state.
type ServiceRow struct {
	Name                                string
	ConsumedSeq, HeadSeq                int64
	Pending, Retrying, DeadLetters      int64
	Owner                               string
	LeaseUntil, StandbyUntil, UpdatedAt int64
	// Partitions is the count in force on a service's row, 0 on a
	// partition's row (of Parent, number Part).
	Partitions, Part int
	Parent           string
}

// RemoveOutcome says what RemoveService did: Removed, or nothing because
// the service is unknown (!Found) or an instance runs it (the activity
// fields, with the database clock Now).
type RemoveOutcome struct {
	Removed, Found           bool
	Owner                    string
	LeaseUntil, StandbyUntil int64
	Now                      int64
}

// SeekParams move service's offset: Target gets the current offset and
// the last number given out, and returns the new offset (or an error that
// rolls the seek back).
type SeekParams struct {
	Service string
	Target  func(from, head int64) (int64, error)
}

// SeekOutcome says what a seek did.
type SeekOutcome struct {
	From, To       int64
	RetriesDropped int64
}

// Offset is a service's offset.
type Offset struct {
	Service string
	Seq     int64
}

// DeadLetterFilter selects dead letters; every set field must match.
type DeadLetterFilter struct {
	EventIDs, Types, Senders []string
	OlderThanMillis          int64 // > 0: failed at least this long ago
	NewerThanMillis          int64 // > 0: failed less than this long ago
}

// DeadLetterQuery pages a service's dead letters matching Filter after a seq.
type DeadLetterQuery struct {
	Service string
	Filter  DeadLetterFilter
	After   int64
	Limit   int
}

// DeadLetter is a stored dead letter.
type DeadLetter struct {
	Record
	Attempts  int
	LastError string
	FailedAt  int64
}

// BeginTxParams store a pending transaction of Service.
type BeginTxParams struct {
	Service   string
	Token     int64
	DueMillis int64 // until the checker may look at it
	Events    []EncodedEvent
}

// ResolveTxParams resolve transaction ID of Service to State: by an
// operator (Token and Claim zero), by the context that began it (Token),
// or by the checker while its claim holds (Claim: the check number).
type ResolveTxParams struct {
	ID      int64
	Service string
	Token   int64
	Claim   int
	State   TxState
}

// ResolveOutcome: Resolved, or not, and then what is stored (Found with
// its state, service and token) and the cleaner's watermark.
type ResolveOutcome struct {
	Resolved  bool
	Found     bool
	State     TxState
	Service   string
	Token     int64
	Watermark int64
}

// DueTx is a pending transaction due for a check.
type DueTx struct {
	ID     int64
	Checks int
}

// RescheduleTxParams record a check of ID that resolved nothing, while
// check number Claim holds.
type RescheduleTxParams struct {
	ID          int64
	Claim       int
	State       TxState // TxPending again, or TxUnresolved
	DelayMillis int64
	Reason      string
}

// TxListParams page a service's transactions in States after an id.
type TxListParams struct {
	Service string
	States  []TxState
	After   int64
	Limit   int
}

// TxRow is a stored transaction.
type TxRow struct {
	ID                          int64
	Service                     string
	State                       TxState
	Checks                      int
	LastError                   string
	DueAt, CreatedAt, UpdatedAt int64
}

// ListenParams configures Wakes.Listen.
type ListenParams struct {
	DSN       string // the connection's DSN (the bus's)
	AppName   string // its application_name, for pg_stat_activity
	Self      string // announcements from this process, which are ignored
	Listening func() // called once the connection listens
	Wake      func() // called for each announcement of another process
}

// ChangeMark is what Wakes.ChangeMark reads: the highest event id and the
// last number the sequencer gave.
type ChangeMark struct {
	MaxID, LastSeq int64
}
