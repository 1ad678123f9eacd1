// Package po holds GORM models of the event store's tables, for inspecting
// them with GORM (db.Table(prefix + "events").Find(&rows)). The schema itself
// is defined by the versioned SQL in package migrations; the bus reads and
// writes with its own SQL. Times are Unix milliseconds of the database clock
// unless noted.
package po

// Event is a row of <prefix>events: the log.
type Event struct {
	ID         int64   `gorm:"column:id;primaryKey"` // insert order
	Seq        *int64  `gorm:"column:seq"`           // delivery order; nil until sequenced
	EventID    string  `gorm:"column:event_id"`
	EventType  string  `gorm:"column:event_type"`
	Sender     string  `gorm:"column:sender"`
	SendType   int16   `gorm:"column:send_type"`
	Payload    []byte  `gorm:"column:payload"`
	Metadata   *string `gorm:"column:metadata"`    // JSON object
	OccurredAt int64   `gorm:"column:occurred_at"` // Unix microseconds, from DomainEvent.CreatedAt
	CreatedAt  int64   `gorm:"column:created_at"`
}

// Sequencer is the single row of <prefix>sequencer: the last seq given out.
type Sequencer struct {
	ID      int   `gorm:"column:id;primaryKey"`
	LastSeq int64 `gorm:"column:last_seq"`
}

// Service is a row of <prefix>services: a consuming service's offset and lease.
type Service struct {
	Name        string `gorm:"column:name;primaryKey"`
	ConsumedSeq int64  `gorm:"column:consumed_seq"`
	Owner       string `gorm:"column:owner"`
	Epoch       int64  `gorm:"column:epoch"`
	Version     int64  `gorm:"column:version"`
	LeaseUntil  int64  `gorm:"column:lease_until"`
	// StandbyUntil: a running instance without the lease reported in until then.
	StandbyUntil int64 `gorm:"column:standby_until"`
	CreatedAt    int64 `gorm:"column:created_at"`
	UpdatedAt    int64 `gorm:"column:updated_at"`
}

// Retry is a row of <prefix>retries: an event a service must try again
// (State 0, or parked behind its sender's failed FIFO event) or gave up on
// (State 1, a dead letter).
type Retry struct {
	Service   string `gorm:"column:service;primaryKey"`
	EventPK   int64  `gorm:"column:event_pk;primaryKey"`
	Seq       int64  `gorm:"column:seq"`
	EventID   string `gorm:"column:event_id"`
	Sender    string `gorm:"column:sender"`
	FIFO      int16  `gorm:"column:fifo"`
	State     int16  `gorm:"column:state"`
	Attempts  int    `gorm:"column:attempts"`
	NextAt    int64  `gorm:"column:next_at"`
	LastError string `gorm:"column:last_error"`
	CreatedAt int64  `gorm:"column:created_at"`
	UpdatedAt int64  `gorm:"column:updated_at"`
}

// Transaction is a row of <prefix>transactions: a transactional message.
// State: 0 pending, 1 committed, 2 rolled back, 3 unresolved.
type Transaction struct {
	ID         int64  `gorm:"column:id;primaryKey"`
	Token      int64  `gorm:"column:token"` // random; with ID, names it in DispatchBegin's context
	Service    string `gorm:"column:service"`
	State      int16  `gorm:"column:state"`
	CheckCount int    `gorm:"column:check_count"`
	DueAt      int64  `gorm:"column:due_at"`
	LastError  string `gorm:"column:last_error"`
	CreatedAt  int64  `gorm:"column:created_at"`
	UpdatedAt  int64  `gorm:"column:updated_at"`
}

// Cleaned is the single row of <prefix>cleaned: the highest transaction id
// the cleaner removed. A transaction not found at or below it may have been
// resolved and cleaned (ErrTxCleaned).
type Cleaned struct {
	ID      int   `gorm:"column:id;primaryKey"`
	MaxTxID int64 `gorm:"column:max_tx_id"`
}

// TransactionEvent is a row of <prefix>transaction_events: an event of a
// pending transaction, copied into the log when it commits.
type TransactionEvent struct {
	TxID       int64   `gorm:"column:tx_id;primaryKey"`
	Ordinal    int     `gorm:"column:ordinal;primaryKey"`
	EventID    string  `gorm:"column:event_id"`
	EventType  string  `gorm:"column:event_type"`
	Sender     string  `gorm:"column:sender"`
	SendType   int16   `gorm:"column:send_type"`
	Payload    []byte  `gorm:"column:payload"`
	Metadata   *string `gorm:"column:metadata"`
	OccurredAt int64   `gorm:"column:occurred_at"`
}
