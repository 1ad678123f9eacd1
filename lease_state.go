// The lease an instance holds on its service's row or a partition's row,
// as the consume loop keeps it (the operations on it are in lease.go).

package eventbus

import (
	"sync"
	"time"
)

// lease is this instance's ownership of its service's consumption.
//
// Fencing: taking the lease increments the service's epoch, and every write
// the owner makes (offset, retries) is conditional on owner and epoch being
// unchanged. An instance that stalls past its lease and wakes up finds its
// writes rejected (ErrLeaseLost) and cannot move the offset back or
// overwrite the new owner's progress. Expiry is judged on the database clock.
type lease struct {
	row    string // the service's row, or a partition's
	epoch  int64
	offset int64 // consumed_seq: every event with seq <= offset is finished

	mu        sync.Mutex
	renewedAt time.Time // local monotonic time when the last successful renewal was sent
	lost      bool      // a renewal found another owner
}

func (l *lease) renewed(at time.Time) {
	l.mu.Lock()
	l.renewedAt = at
	l.mu.Unlock()
}

func (l *lease) markLost() {
	l.mu.Lock()
	l.lost = true
	l.mu.Unlock()
}

func (l *lease) isLost() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

func (l *lease) age() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Since(l.renewedAt)
}
