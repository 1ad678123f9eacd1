package eventbus

import (
	"context"
	"sync"
	"time"

	"github.com/dddbus/eventbus/ddd"
)

// Sender holds.
//
// A handler call the bus stopped waiting for (abandoned past HandlerTimeout,
// set aside with no timeout, or left running when a stop's grace ran out)
// may still be running. Until it returns, its sender must get no other
// event, not even the retry of the same one, or the sender would be handled
// twice at once. The consuming instance keeps such senders here, in memory
// (one instance consumes a service at a time), and while a sender is held:
//
//   - its events in new batches are parked: stored in the retry store, so
//     that the offset moves past them and other senders go on;
//   - the retry phase leaves its rows alone (and out of its query, so that
//     they cannot crowd out other senders' retries).
//
// When the call returns (and, if it was set aside, once its result is
// recorded), the sender drains: the retry phase runs its stored rows in log
// order, while its new events still park behind them; after a retry phase
// that ran every due row, the hold ends and the sender's events flow again.
//
// The cost: a held sender's events take a detour through the retry store
// (one write and one delete each). A hold lives as long as the bus, across
// stops and lease changes; another instance cannot see it (see README).
type holds struct {
	mu sync.Mutex
	m  map[string]*hold // by sender
}

type holdKind int8

const (
	heldAbandoned holdKind = iota // past HandlerTimeout and its grace: a failed attempt
	heldSetAside                  // HandlerTimeout 0: its result is recorded when it returns
	heldAtStop                    // still running when a stop's grace ran out
)

type holdState int8

const (
	holdRunning  holdState = iota // the call has not returned
	holdReturned                  // set aside, returned; its result is not recorded yet
	holdDraining                  // returned; what was stored meanwhile still has to run
)

type hold struct {
	c     *call
	kind  holdKind
	state holdState
	row   callRow // heldSetAside: where the event waits, to record the result in
	res   result  // heldSetAside, once returned: the call's result
}

// maxExcluded bounds the senders the retry query leaves out by name; the
// rows of any others still held are fetched and skipped.
const maxExcluded = 500

// add records that the bus stopped waiting for c, unless c has returned
// meanwhile or was let go already (then it reports false).
func (hs *holds) add(c *call, hd *hold) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if c.finished || c.hold != nil {
		return false
	}
	if hs.m == nil {
		hs.m = map[string]*hold{}
	}
	hd.c = c
	c.hold = hd
	hs.m[c.evt.Sender] = hd
	return true
}

// returned marks c finished with res and returns its hold, if it has one.
func (hs *holds) returned(c *call, res result) *hold {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	c.finished = true
	hd := c.hold
	switch {
	case hd == nil:
	case hd.kind == heldSetAside:
		hd.res, hd.state = res, holdReturned
	default:
		hd.state = holdDraining
	}
	return hd
}

// blocks reports whether an event of sender must not run now: in a batch,
// while the sender is held at all; in the retry phase, until it drains.
func (hs *holds) blocks(sender string, retryPhase bool) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hd := hs.m[sender]
	return hd != nil && (!retryPhase || hd.state != holdDraining)
}

// retryPlan is what the holds mean for one retry phase.
type retryPlan struct {
	excluded []string // senders whose rows must not run (at most maxExcluded)
	draining []string // senders whose stored rows may run now
	record   []*hold  // set-aside calls whose results to record (their senders are excluded)
}

// plan returns the plan of a retry phase under the lease of epoch, for the
// senders of the partition consumed (mine). A
// set-aside result from an earlier lease is dropped: its row may have been
// run by another owner since, so it runs again (at least once, as always).
func (hs *holds) plan(epoch int64, mine func(sender string) bool) retryPlan {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var p retryPlan
	for s, hd := range hs.m {
		if !mine(s) {
			continue // another partition's (see partition.go)
		}
		if hd.state == holdReturned && hd.row.epoch != epoch {
			hd.state = holdDraining
		}
		switch hd.state {
		case holdRunning:
		case holdReturned:
			p.record = append(p.record, hd)
		case holdDraining:
			p.draining = append(p.draining, s)
			continue
		}
		if len(p.excluded) < maxExcluded {
			p.excluded = append(p.excluded, s)
		}
	}
	return p
}

// recorded moves set-aside holds whose results were committed to draining.
func (hs *holds) recorded(hds []*hold) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, hd := range hds {
		hd.state = holdDraining
	}
}

// release ends the holds of senders that were draining when a retry phase
// began that then ran every due row.
func (hs *holds) release(senders []string) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for _, s := range senders {
		if hd := hs.m[s]; hd != nil && hd.state == holdDraining {
			delete(hs.m, s)
		}
	}
}

// running returns the calls that have not returned.
func (hs *holds) running() []*call {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var cs []*call
	for _, hd := range hs.m {
		if hd.state == holdRunning {
			cs = append(cs, hd.c)
		}
	}
	return cs
}

// call is one handler call the bus may stop waiting for. Go cannot stop a
// goroutine: a call that ignores its context keeps its worker goroutine,
// and the bus goes on with a new one (see runBySender).
type call struct {
	ctx     context.Context // the handler's: its logs carry the user's values (trace ids)
	evt     *ddd.DomainEvent
	started time.Time
	next    func(result) // if the bus stops waiting: hands on the event's result

	// Guarded by holds.mu.
	finished bool  // the handler returned
	hold     *hold // set when the bus stopped waiting for the call
}

// callRow says where a call's event is stored, should the call be set aside.
type callRow struct {
	pk       int64
	attempts int   // failed attempts before this call
	epoch    int64 // lease the batch or retry phase runs under
}
