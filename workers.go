package eventbus

import (
	"context"
	"sync"

	"github.com/dddbus/eventbus/ddd"
)

// runBySender handles recs (in seq order) on up to ConsumeConcurrent
// goroutines: each sender's records run one at a time and in order on one
// goroutine, different senders run in parallel.
//
// attempts[i] is how many times recs[i] was tried before; nil in a batch
// (never tried), set in the retry phase. A record parks instead of running
// while its sender is held (a call the bus stopped waiting for: see
// holds), when it is FIFO and its sender is in blocked, or when an earlier
// FIFO record of its sender failed and will be retried. A record starts
// only if proceed() holds; once it does not, the records not yet started
// stay unfinished. admit and parent are as for invoke; epoch is the lease's.
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
	run := func(idx []int) {
		sender := recs[idx[0]].evt.Sender
		fifoBlocked := blocked[sender]
		for _, i := range idx {
			if !proceed() {
				return
			}
			r := recs[i]
			fifo := r.evt.SendType == ddd.SendFIFO
			if held := b.holds.blocks(sender, retrying); held || (fifo && fifoBlocked) {
				results[i] = result{verdict: parked}
				if !held || !retrying { // a held row of the retry phase stays as it is
					b.stats.parked.Add(1)
				}
				continue
			}
			prior := 0
			if retrying {
				prior = attempts[i]
			}
			res := b.invoke(admit, parent, h, r.evt, callRow{pk: r.pk, attempts: prior, epoch: epoch})
			switch res.verdict {
			case unfinished: // not started (stopping), or still running when the stop's grace ran out
				return
			case failed:
				res.attempts = prior + 1
				b.nextAttempt(&res)
				fifoBlocked = fifoBlocked || (fifo && res.retry)
			}
			results[i] = res
		}
	}
	workers := min(b.opts.ConsumeConcurrent, len(order))
	if workers <= 1 {
		for _, s := range order {
			run(groups[s])
		}
		return results
	}
	jobs := make(chan []int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for idx := range jobs {
				run(idx)
			}
		})
	}
	for _, s := range order {
		jobs <- groups[s]
	}
	close(jobs)
	wg.Wait()
	return results
}
