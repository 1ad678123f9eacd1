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
// attempts[i] is how many times recs[i] was tried before (nil: never).
// A FIFO record parks instead of running when its sender is in blocked, or
// when an earlier FIFO record of its sender failed and will be retried.
// A record starts only if proceed() holds; once it does not, the records
// not yet started stay unfinished.
func (b *EventBus) runBySender(ctx context.Context, h ddd.DomainEventHandler, recs []*record, attempts []int,
	blocked map[string]bool, proceed func() bool) []result {
	results := make([]result, len(recs))
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
		fifoBlocked := blocked[recs[idx[0]].evt.Sender]
		for _, i := range idx {
			if !proceed() {
				return
			}
			fifo := recs[i].evt.SendType == ddd.SendFIFO
			if fifo && fifoBlocked {
				results[i] = result{verdict: parked}
				b.stats.parked.Add(1)
				continue
			}
			attempt := 1
			if attempts != nil {
				attempt = attempts[i] + 1
			}
			hctx, observed := b.observeHandlerStart(ctx, recs[i], attempt)
			res := b.invoke(hctx, h, recs[i].evt)
			if res.verdict == failed {
				res.attempts = attempt
				b.nextAttempt(&res)
				fifoBlocked = fifoBlocked || (fifo && res.retry)
			}
			b.observeHandlerEnd(observed, recs[i].evt, res)
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
