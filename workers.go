package eventbus

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/dddbus/eventbus/ddd"
)

// runBySender handles recs (in seq order) on up to ConsumeConcurrent
// workers: each sender's records run one at a time and in order on one
// worker, different senders run in parallel.
//
// attempts[i] is how many times recs[i] was tried before; nil in a batch
// (never tried), set in the retry phase. A record parks instead of running
// while its sender is held (a call the bus stopped waiting for: see
// holds), when it is FIFO and its sender is in blocked, or when an earlier
// FIFO record of its sender failed and will be retried. A record starts
// only if proceed() holds; once it does not, the records not yet started
// stay unfinished. admit and parent are as for invoke; epoch is the lease's.
//
// A worker runs handlers on its own goroutine. When the bus stops waiting
// for a call (invoke's letGo), a new goroutine takes the worker's place,
// with the rest of its sender's records (held, so they park) and the
// remaining senders; the old one exits when the call returns.
func (b *EventBus) runBySender(admit, parent context.Context, h ddd.DomainEventHandler, epoch int64,
	recs []*record, attempts []int, blocked map[string]bool, proceed func() bool) []result {
	results := make([]result, len(recs))
	retrying := attempts != nil
	var order []string
	groups := make(map[string][]int)
	for i, r := range recs {
		s := r.evt.Sender
		if _, ok := groups[s]; !ok {
			order = append(order, s)
		}
		groups[s] = append(groups[s], i)
	}
	jobs := make(chan []int, len(order))
	for _, s := range order {
		jobs <- groups[s]
	}
	close(jobs)

	// lane is a worker's place in its sender's records; owned by one
	// goroutine at a time.
	type lane struct {
		idx         []int
		pos         int
		fifoBlocked bool
		running     atomic.Pointer[call] // the call in progress, for the stop below
		observed    handlerObservation   // the call in progress, for the Observer
	}
	// settle records res for the lane's current record and moves past it.
	settle := func(l *lane, res result) {
		i := l.idx[l.pos]
		switch res.verdict {
		case unfinished: // not started (stopping), or still running when the stop's grace ran out
			b.observeHandlerEnd(l.observed, recs[i].evt, res)
			l.pos = len(l.idx)
			return
		case failed:
			res.attempts = 1
			if retrying {
				res.attempts = attempts[i] + 1
			}
			b.nextAttempt(parent, recs[i].evt, &res)
			l.fifoBlocked = l.fifoBlocked || (recs[i].evt.SendType == ddd.SendFIFO && res.retry)
		}
		b.observeHandlerEnd(l.observed, recs[i].evt, res)
		results[i] = res
		l.pos++
	}
	var wg sync.WaitGroup
	var work func(l *lane)
	work = func(l *lane) {
		for {
			if l.pos == len(l.idx) {
				idx, ok := <-jobs
				if !ok {
					wg.Done()
					return
				}
				l.idx, l.pos, l.fifoBlocked = idx, 0, blocked[recs[idx[0]].evt.Sender]
			}
			if !proceed() {
				l.pos = len(l.idx)
				continue
			}
			i := l.idx[l.pos]
			r := recs[i]
			if held := b.holds.blocks(r.evt.Sender, retrying); held || (r.evt.SendType == ddd.SendFIFO && l.fifoBlocked) {
				results[i] = result{verdict: parked}
				if !held || !retrying { // a held row of the retry phase stays as it is
					b.stats.parked.Add(1)
				}
				l.pos++
				continue
			}
			row := callRow{pk: r.pk, epoch: epoch}
			if retrying {
				row.attempts = attempts[i]
			}
			var hctx context.Context
			hctx, l.observed = b.observeHandlerStart(parent, r, row.attempts+1)
			res, mine := b.invoke(admit, hctx, h, r.evt, row, &l.running, func(res result) {
				settle(l, res)
				go work(l)
			})
			if !mine {
				return // replaced while the call ran; the new goroutine has l and the WaitGroup's count
			}
			settle(l, res)
		}
	}
	lanes := make([]lane, min(b.opts.ConsumeConcurrent, len(order)))
	// When a stop's grace is over, the bus stops waiting for the calls
	// still running. Returning waits for this callback if it started.
	letGoAll := make(chan struct{})
	stopLetGo := context.AfterFunc(parent, func() {
		defer close(letGoAll)
		for i := range lanes {
			if c := lanes[i].running.Load(); c != nil {
				b.letGo(c, &hold{kind: heldAtStop})
			}
		}
	})
	defer func() {
		if !stopLetGo() {
			<-letGoAll
		}
	}()
	wg.Add(len(lanes))
	for i := range lanes {
		go work(&lanes[i])
	}
	wg.Wait()
	return results
}
