package eventbus

import (
	"errors"

	"github.com/dddbus/eventbus/ddd"
	"github.com/dddbus/eventbus/internal/store"
)

// Sentinel errors. Errors returned by the bus wrap them, so callers test with errors.Is.
var (
	// ErrInvalidDB: the *gorm.DB is nil, of an unsupported dialect, or misconfigured.
	ErrInvalidDB = store.ErrInvalidDB
	// ErrInvalidOption: an option of NewEventBus (or Migrate's table prefix) is
	// out of range, or does not fit the database (MaxPayloadBytes over MySQL's
	// max_allowed_packet).
	ErrInvalidOption = store.ErrInvalidOption
	// ErrInvalidArgument: an argument of a call is out of range (a list limit,
	// a nil context).
	ErrInvalidArgument = errors.New("eventbus: invalid argument")
	// ErrInvalidHandler: RegisterEventHandler, RegisterBatchHandler or
	// RegisterEventTxChecker got nil. It is ddd.ErrInvalidHandler.
	ErrInvalidHandler = ddd.ErrInvalidHandler
	// ErrInvalidTransaction: ctx carries a transaction the bus cannot write
	// with: a nil or zero *gorm.DB, a *gorm.DB that is not in a transaction,
	// or a nil *sql.Tx.
	ErrInvalidTransaction = store.ErrInvalidTransaction
	// ErrSchemaVersion: with AutoMigrate off, the database lacks tables or
	// migrations this version needs; the error names the version found and
	// the one needed.
	ErrSchemaVersion = errors.New("eventbus: schema version")
	// ErrInvalidServiceName: the service name is empty, too long or has characters outside [A-Za-z0-9_.:-].
	ErrInvalidServiceName = errors.New("eventbus: invalid service name")
	// ErrInvalidEvent: an event failed validation; nothing was written. It is
	// ddd.ErrInvalidEvent, so errors.Is works with either name.
	ErrInvalidEvent = ddd.ErrInvalidEvent
	// ErrHandlerRegistered: RegisterEventHandler or RegisterEventTxChecker was
	// called twice, or a bus got both an event and a batch handler.
	ErrHandlerRegistered = errors.New("eventbus: handler already registered")
	// ErrAlreadyStarted: Start was called on a bus that is running.
	ErrAlreadyStarted = errors.New("eventbus: already started")
	// ErrForeignTransaction: ctx carries a transaction on another database
	// (server, database, or schema without the bus's tables) than the bus's;
	// nothing was written. It is ddd.ErrForeignTransaction.
	ErrForeignTransaction = ddd.ErrForeignTransaction
	// ErrNoTransaction: Commit or Rollback got a context without a pending transaction.
	ErrNoTransaction = errors.New("eventbus: no transaction in context")
	// ErrTxRolledBack: Commit of a transaction that was already rolled back.
	ErrTxRolledBack = errors.New("eventbus: transaction already rolled back")
	// ErrTxCommitted: Rollback of a transaction that was already committed.
	ErrTxCommitted = errors.New("eventbus: transaction already committed")
	// ErrTxNotFound: the transaction never became durable (its business
	// transaction rolled back) or never existed.
	ErrTxNotFound = errors.New("eventbus: transaction not found")
	// ErrTxCleaned: the transaction is no longer stored, and its id is at or
	// below the highest one the cleaner removed: it was resolved and removed
	// after RetentionTime, so whether it committed is no longer known (or,
	// begun that long ago, it never became durable).
	ErrTxCleaned = errors.New("eventbus: transaction resolved and cleaned; its outcome is no longer known")
	// ErrTxOtherService: Commit or Rollback of a transaction another service began.
	ErrTxOtherService = errors.New("eventbus: transaction belongs to another service")
	// ErrLeaseLost: this instance no longer owns its service's lease; its work is discarded.
	//
	// Deprecated: no call returns it, nor an error wrapping it. Losing the
	// lease is not something a caller handles: Start goes on, drops the
	// batch's unrecorded work for the new owner and waits to take the lease
	// again. Observe it through Observer.LeaseChange (kind LeaseLost) and the
	// "lease lost" log line.
	ErrLeaseLost = errors.New("eventbus: lease lost")
	// ErrServiceActive: RemoveService was called while an instance holds the service's lease.
	ErrServiceActive = errors.New("eventbus: service is running")
	// ErrServiceNotFound: SeekService named a service that is not registered.
	ErrServiceNotFound = errors.New("eventbus: service not found")
)
