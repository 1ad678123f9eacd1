package eventbus

import "sync"

// routines tracks the goroutines the bus starts for one Start: the
// sequencer's background sequencing, the read-ahead of the next batch, the
// lease renewals of the batch heartbeat and the Tx checker's loop. Start
// waits for them all before it returns. The others are joined where they
// are started: the heartbeat by its batch (runLeased), the workers by
// runBySender, the cleaner's jobs by the cron scheduler's Stop, and the
// stop's grace timer by its end function (stopGrace). The wake-up watcher
// (wakeup.go: PostgreSQL's listener or the change probe) is shared by the
// started buses of a process on one database: it starts with the first
// and the last one's Start waits for it before returning. A NOTIFY that
// Notify defers (PostgreSQL, coalescing) runs on a timer of the producer
// call, not of a Start, and ends within 5ms plus its statement.
//
// The one exception is user code the bus has stopped waiting for: a
// handler call abandoned past HandlerTimeout plus its grace, or still
// running when ShutdownGrace ran out, and a Tx checker call past
// TxCheckCallTimeout. Go cannot stop a goroutine, and waiting for code that
// ignores its context would hang Start; such a call may still run after
// Start returned (Stats.Unreturned counts handler calls). The statement
// cache's prepares belong to the connection pool, shared by every bus and
// producer call on it, not to a Start; each ends within prepareTimeout.
type routines struct{ wg sync.WaitGroup }

// Go runs f on a new goroutine that Wait waits for. Call it before Wait
// starts, or from a goroutine Wait waits for.
func (r *routines) Go(f func()) { r.wg.Go(f) }

// Wait returns once every f passed to Go has returned.
func (r *routines) Wait() { r.wg.Wait() }
