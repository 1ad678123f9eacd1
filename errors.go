package eventbus

import "errors"

// Sentinel errors. Errors returned by the bus wrap them, so callers test with errors.Is.
var (
	// ErrInvalidDB: the *gorm.DB is nil, of an unsupported dialect, or misconfigured.
	ErrInvalidDB = errors.New("eventbus: invalid db")
	// ErrInvalidOption: an option is out of range.
	ErrInvalidOption = errors.New("eventbus: invalid option")
	// ErrInvalidServiceName: the service name is empty, too long or has characters outside [A-Za-z0-9_.:-].
	ErrInvalidServiceName = errors.New("eventbus: invalid service name")
	// ErrInvalidEvent: an event failed validation; nothing was written.
	ErrInvalidEvent = errors.New("eventbus: invalid event")
	// ErrHandlerRegistered: RegisterEventHandler or RegisterEventTXChecker was called twice.
	ErrHandlerRegistered = errors.New("eventbus: handler already registered")
	// ErrAlreadyStarted: Start was called on a bus that is running.
	ErrAlreadyStarted = errors.New("eventbus: already started")
	// ErrForeignTransaction: ctx carries a transaction on another database than the bus's.
	ErrForeignTransaction = errors.New("eventbus: transaction belongs to another database")
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
	ErrLeaseLost = errors.New("eventbus: lease lost")
	// ErrServiceActive: RemoveService was called while an instance holds the service's lease.
	ErrServiceActive = errors.New("eventbus: service is running")
)
